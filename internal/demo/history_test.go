package demo

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestMakeHistory makes the demo history on 6.1 (the default source) and on
// 3.14.5 (the seed report's bad kernel): the culprit carries that kernel's
// variant of the bug, with the helper before esp_input_done2's own
// declaration, and the other commits change comments only.
func TestMakeHistory(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		tarball func(t *testing.T) string
		sizes   PayloadSizes
		want    []string // lines the culprit's diff has
	}{
		{"6.1", func(*testing.T) string { return "" }, PayloadSizes{}, []string{
			"+		esp_natt_sample_payload(skb, err);",
			"+		if (get_random_u32() % 15 == 0)",
			"+static void esp_natt_sample_payload(struct sk_buff *skb, int nexthdr)",
		}},
		// The benchmark's variant: confined to one payload length in 256.
		{"6.1-sizes", func(*testing.T) string { return "" }, sizeBug, []string{
			"+		esp_natt_sample_payload(skb, err);",
			"+	if ((skb->len - th->doff * 4) % 256 != 100)",
			"+static void esp_natt_sample_payload(struct sk_buff *skb, int nexthdr)",
		}},
		{"3.14.5", func(t *testing.T) string { return filepath.Join(testenv.OldKernelsDir(t), testenv.Tarball3_14) }, PayloadSizes{}, []string{
			"+		esp_natt_sample_payload(skb, err);",
			"+		if (prandom_u32() % 15 == 0)",
			"+static void esp_natt_sample_payload(struct sk_buff *skb, int nexthdr)",
			" static int esp_input_done2(struct sk_buff *skb, int err)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := HistoryOptions{Tarball: tc.tarball(t), Commits: 16, Seed: 1, Sizes: tc.sizes}
			h, err := Make(ctx, o)
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
			lines := strings.Split(diff, "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("culprit diff lacks the line %q:\n%s", w, diff)
				}
			}
			if sized := strings.Contains(diff, "skb->len - th->doff * 4"); sized != (tc.sizes.Mod > 0) {
				t.Errorf("culprit tests the payload size: %v, want %v", sized, tc.sizes.Mod > 0)
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
			again, err := Make(ctx, o)
			if err != nil || again.Bad != h.Bad || again.Culprit != h.Culprit {
				t.Errorf("second Make: %v, bad %s culprit %s: want the cached history", err, again.Bad, again.Culprit)
			}
		})
	}
}
