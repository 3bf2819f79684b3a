package demo

import (
	"context"
	"strings"
	"testing"
)

func TestMakeHistory(t *testing.T) {
	ctx := context.Background()
	h, err := Make(ctx, HistoryOptions{Commits: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Commits) != 16 || h.Commits[15] != h.Bad {
		t.Fatalf("%d commits, last %s, bad %s: want 16 ending at bad", len(h.Commits), h.Commits[len(h.Commits)-1], h.Bad)
	}
	idx := -1
	for i, c := range h.Commits {
		if c == h.Culprit {
			idx = i
		}
	}
	if idx < 4 || idx >= 12 {
		t.Errorf("culprit at %d of 16: want it inside the range", idx)
	}
	files, err := git(ctx, h.Dir, nil, "diff-tree", "--no-commit-id", "--name-only", "-r", h.Culprit)
	if err != nil || strings.TrimSpace(files) != culpritFile {
		t.Errorf("culprit touches %q (%v), want %s", files, err, culpritFile)
	}
	diff, _ := git(ctx, h.Dir, nil, "show", h.Culprit)
	if !strings.Contains(diff, "+		esp_natt_sample_payload(skb, err);") {
		t.Errorf("culprit diff lacks the bug:\n%s", diff)
	}
	// Harmless commits change comments only.
	for _, c := range h.Commits {
		if c == h.Culprit {
			continue
		}
		d, _ := git(ctx, h.Dir, nil, "show", "--format=", "-U0", c)
		for _, l := range strings.Split(d, "\n") {
			if strings.HasPrefix(l, "+") && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "+/* kbisect demo") {
				t.Errorf("harmless commit %s adds %q", c[:12], l)
			}
		}
	}
	again, err := Make(ctx, HistoryOptions{Commits: 16, Seed: 1})
	if err != nil || again.Bad != h.Bad || again.Culprit != h.Culprit {
		t.Errorf("second Make: %v, bad %s culprit %s: want the cached history", err, again.Bad, again.Culprit)
	}
}
