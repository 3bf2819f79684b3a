// Package exectest is a bisect.Tester that runs any command as the test, as
// `git bisect run` does (see internal/bisectrun): in a checkout kbisect owns
// (never the user's worktree), exit status 0 good, 125 skip, 1-127 bad,
// anything else (128 and up, killed by a signal, timed out) an
// infrastructure error.
package exectest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/bisectrun"
	"github.com/kbisect/kbisect/internal/failsig"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/procgroup"
)

// Tester runs Command with `sh -c` in one of its checkouts of Repo.
type Tester struct {
	Repo    *gitrepo.Repo
	Command string
	// Dir holds the checkouts (Dir/work/N) and the run logs (Dir/logs).
	Dir string
	// TimeMode says that the budget of a test is the length of the run the
	// search asks for (the command reads it from KBISECT_BUDGET and exits
	// 1 at its first failure): the command is killed only Grace after it
	// (default half the budget, at least 30 s). Otherwise the budget is
	// the time limit of a run (0: none; a bisection always gives one).
	TimeMode bool
	Grace    time.Duration

	mu     sync.Mutex
	spaces []*space
}

type space struct {
	idx     int
	ws      *gitrepo.Workspace
	busy    bool
	current string // commit checked out, or "revert:<culprit>:<bad>"
	sig     string
	used    time.Time
}

// ForJob returns the Tester of the bisection spec (its Exec command) in
// job directory dir: a checkout per parallel worker. In time mode the
// command gets the run length in KBISECT_BUDGET and the job's Timeout is
// the grace after it; in runs mode the budget is the time limit of a run
// (--timeout, or one the bisection derives from the runs so far).
func ForJob(repo *gitrepo.Repo, spec bisect.JobSpec, dir string) *Tester {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	t := New(repo, spec.Exec, dir, spec.Options.Parallel)
	if spec.Options.Unit == bisect.UnitTime {
		t.TimeMode, t.Grace = true, spec.Options.Timeout
	}
	return t
}

// New returns a Tester with workers checkouts under dir/work.
func New(repo *gitrepo.Repo, command, dir string, workers int) *Tester {
	t := &Tester{Repo: repo, Command: command, Dir: dir}
	for i := 0; i < max(workers, 1); i++ {
		t.spaces = append(t.spaces, &space{idx: i})
	}
	return t
}

// take returns a free checkout, preferring one that has key checked out.
func (t *Tester) take(key string) (*space, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var pick *space
	for _, s := range t.spaces {
		if s.busy {
			continue
		}
		if s.current == key {
			pick = s
			break
		}
		if pick == nil || s.used.Before(pick.used) {
			pick = s
		}
	}
	if pick == nil {
		// More concurrent calls than checkouts: add one.
		pick = &space{idx: len(t.spaces)}
		t.spaces = append(t.spaces, pick)
	}
	pick.busy = true
	pick.used = time.Now()
	return pick, nil
}

func (t *Tester) release(s *space) {
	t.mu.Lock()
	s.busy = false
	t.mu.Unlock()
}

// prepare makes the space's checkout on its first use: work/N, unless
// processes still work in it (a test of a killed kbisect that left its
// process group, see internal/procgroup): then a new one, work/N.1 and so
// on. A test never shares its checkout with a survivor.
func (t *Tester) prepare(ctx context.Context, s *space) error {
	if s.ws != nil {
		return nil
	}
	dir := filepath.Join(t.Dir, "work", strconv.Itoa(s.idx))
	for n := 1; len(procgroup.WaitIdle(ctx, dir, procgroup.Linger)) > 0; n++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		dir = filepath.Join(t.Dir, "work", fmt.Sprintf("%d.%d", s.idx, n))
	}
	ws, err := t.Repo.Workspace(ctx, dir)
	if err != nil {
		return err
	}
	s.ws = ws
	return nil
}

// Test implements bisect.Tester.
func (t *Tester) Test(ctx context.Context, commit string, budget time.Duration) (bisect.Outcome, error) {
	s, err := t.take(commit)
	if err != nil {
		return bisect.Outcome{}, err
	}
	defer t.release(s)
	var out bisect.Outcome
	if s.current != commit {
		t0 := time.Now()
		if err := t.prepare(ctx, s); err != nil {
			return out, err
		}
		s.current = ""
		if err := s.ws.Checkout(ctx, commit); err != nil {
			return out, err
		}
		tree, err := s.ws.Git(ctx, "rev-parse", "HEAD^{tree}")
		if err != nil {
			return out, fmt.Errorf("tree of %s in %s: %w", commit, s.ws.Dir, err)
		}
		s.current, s.sig = commit, "tree:"+strings.TrimSpace(tree)
		out.Built, out.BuildTime = true, time.Since(t0)
	}
	out.Signature = s.sig
	return t.run(ctx, s, commit, budget, out)
}

// TestRevert implements bisect.RevertTester: it checks bad out, reverts
// culprit on top of it (git revert --no-edit, -m 1 for a merge) in the
// checkout, and runs the command. A revert that does not apply is a Skip.
func (t *Tester) TestRevert(ctx context.Context, culprit, bad string, budget time.Duration) (bisect.Outcome, error) {
	key := "revert:" + culprit + ":" + bad
	s, err := t.take(key)
	if err != nil {
		return bisect.Outcome{}, err
	}
	defer t.release(s)
	var out bisect.Outcome
	if s.current != key {
		t0 := time.Now()
		if err := t.prepare(ctx, s); err != nil {
			return out, err
		}
		s.current = ""
		if err := s.ws.Checkout(ctx, bad); err != nil {
			return out, err
		}
		if _, err := s.ws.Git(ctx, "cat-file", "-e", culprit+"^{commit}"); err != nil {
			if _, err := s.ws.Git(ctx, "fetch", "--quiet", "--no-tags", t.Repo.Dir, culprit); err != nil {
				return out, fmt.Errorf("fetch %s into %s: %w", culprit, s.ws.Dir, err)
			}
		}
		args := []string{"-c", "user.name=kbisect", "-c", "user.email=kbisect@localhost", "revert", "--no-edit"}
		if parents, _ := s.ws.Git(ctx, "rev-list", "--parents", "-n", "1", culprit); len(strings.Fields(parents)) > 2 {
			args = append(args, "-m", "1")
		}
		if _, err := s.ws.Git(ctx, append(args, culprit)...); err != nil {
			s.ws.Git(ctx, "revert", "--abort")
			out.Verdict = bisect.Skip
			out.Reason = fmt.Sprintf("reverting %.12s on top of %.12s does not apply cleanly", culprit, bad)
			out.Built, out.BuildTime = true, time.Since(t0)
			return out, nil
		}
		s.current = key
		out.Built, out.BuildTime = true, time.Since(t0)
	}
	return t.run(ctx, s, bad, budget, out)
}

// evidence is the Outcome.Evidence of a run.
type evidence struct {
	Exit   int    `json:"exit"`
	Signal string `json:"signal,omitempty"`
	Log    string `json:"log,omitempty"`
	Dir    string `json:"dir"`
}

func (t *Tester) run(ctx context.Context, s *space, commit string, budget time.Duration, out bisect.Outcome) (bisect.Outcome, error) {
	ri, _ := bisect.RunFromContext(ctx)
	logDir := filepath.Join(t.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return out, fmt.Errorf("run logs: %w", err)
	}
	logName := filepath.Join(logDir, fmt.Sprintf("run-%05d.log", ri.Seq))
	logf, err := os.Create(logName)
	if err != nil {
		return out, fmt.Errorf("run log: %w", err)
	}
	defer logf.Close()
	limit := budget
	if t.TimeMode && budget > 0 {
		grace := t.Grace
		if grace <= 0 {
			grace = max(budget/2, 30*time.Second)
		}
		limit = budget + grace
	}
	res, err := bisectrun.Run(ctx, bisectrun.Command{
		Shell: t.Command,
		Dir:   s.ws.Dir,
		Env: []string{
			"KBISECT_COMMIT=" + commit,
			"KBISECT_RUN=" + strconv.Itoa(ri.Seq),
			"KBISECT_WORKER=" + strconv.Itoa(ri.Worker),
			"KBISECT_JOB=" + t.Dir,
			"KBISECT_BUDGET=" + strconv.FormatFloat(budget.Seconds(), 'f', -1, 64),
		},
		Output:  logf,
		Timeout: limit,
	})
	if err != nil {
		return out, err
	}
	out.Elapsed = res.Elapsed
	if res.Verdict == bisectrun.Abort {
		hint := ""
		if res.TimedOut {
			hint = "; give --timeout if a run needs longer"
		}
		return out, fmt.Errorf("%w on %.12s (log %s)%s", res.Err, commit, logName, hint)
	}
	out.Verdict = verdicts[res.Verdict]
	if out.Verdict != bisect.Pass {
		out.Reason = res.Reason()
	}
	if out.Verdict == bisect.Fail {
		out.FailSig = logSignature(logName)
	}
	out.Evidence, _ = json.Marshal(evidence{Exit: res.Exit, Signal: res.Signal, Log: logName, Dir: s.ws.Dir})
	return out, nil
}

// logSignature is the failure signature a run's log gives: what the
// command printed after failsig.Marker (KBISECT-SIGNATURE:), else the first
// kernel oops line (see failsig.FromOutput). It reads at most 16 MiB.
func logSignature(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
	return failsig.FromOutput(b)
}

var verdicts = map[bisectrun.Verdict]bisect.Verdict{
	bisectrun.Good: bisect.Pass,
	bisectrun.Bad:  bisect.Fail,
	bisectrun.Skip: bisect.Skip,
}
