package bisect

import (
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/statusline"
)

// TestProgressLine: piped (not a terminal), one plain line per run that
// ends and nothing else; on a terminal the same lines, and below them a
// live line with the runs in flight, how long they have run, the best
// candidate and the estimate, redrawn in place and cut to the width.
func TestProgressLine(t *testing.T) {
	a := Commit{Hash: "aaaaaaaaaaaa1111"}
	b := Commit{Hash: "bbbbbbbbbbbb2222"}
	clock := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	events := []struct {
		after time.Duration
		ev    Progress
	}{
		{0, Progress{Phase: "search", Seq: 1, Commit: a, Started: true}},
		{0, Progress{Phase: "search", Seq: 2, Commit: b, Started: true}},
		{83 * time.Second, Progress{Phase: "search", Seq: 1, Commit: a, Verdict: Fail, Best: a, BestP: 0.42, Runs: 1, Builds: 1, LeftRuns: 9, LeftTime: 25 * time.Minute}},
		{time.Second, Progress{Phase: "done", Finished: &Result{}}},
	}
	for _, tc := range []struct {
		name  string
		live  bool
		width int
		want  []string
		not   []string
	}{
		{"piped", false, 0, []string{"08:01:23 [1] search   aaaaaaaaaaaa fail", "best aaaaaaaaaaaa  42.0%"}, []string{"\r", "running", "[2]"}},
		{"terminal", true, 200, []string{"\r\033[Krunning #1 aaaaaaaaaaaa 0s, #2 bbbbbbbbbbbb 0s",
			"\r\033[K08:01:23 [1] search   aaaaaaaaaaaa fail",
			"\r\033[Krunning #2 bbbbbbbbbbbb 1m23s | best aaaaaaaaaaaa 42.0% | 1 runs, 1 builds | about 9 runs, 25m0s left"}, nil},
		{"narrow terminal", true, 30, []string{"\r\033[Krunning #2 bbbbbbbbbbbb 1m23s\r"}, []string{"best aaaaaaaaaaaa 42.0% | 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			p := NewProgressLine(statusline.New(&out, tc.live, tc.width))
			now := clock
			p.now = func() time.Time { return now }
			for _, e := range events {
				now = now.Add(e.after)
				p.Event(e.ev)
			}
			p.Close()
			got := out.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%q", w, got)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("output has %q:\n%q", w, got)
				}
			}
			if tc.live && !strings.HasSuffix(got, "\r\033[K") {
				t.Errorf("the live line is not cleared at the end: %q", got)
			}
			if n := strings.Count(got, "\n"); n != 1 {
				t.Errorf("%d lines, want one per run that ended", n)
			}
		})
	}
}
