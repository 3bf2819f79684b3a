// Package exectest is a bisect.Tester that runs any command as the test, as
// `git bisect run` does: in a checkout kbisect owns (never the user's
// worktree), exit status 0 good, 125 skip, 1-127 bad, anything else (128 and
// up, killed by a signal, timed out) an infrastructure error.
package exectest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Exit statuses of the command, as `git bisect run` reads them.
const (
	ExitGood = 0
	ExitSkip = 125
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
	// the time limit of a run (0: none).
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

// CheckCommand checks that the program of command (its first word) can be
// run, and returns command with a program given as a relative path made
// absolute (relative to the current directory), so that it runs from the
// checkouts. A program found in the repository (repoDir) is left relative:
// it runs from the commit under test, as `git bisect run ./script` does.
func CheckCommand(command, repoDir string) (string, error) {
	cmd := strings.TrimSpace(command)
	if cmd == "" {
		return "", fmt.Errorf("--exec is empty: give the command that tests the checked-out tree")
	}
	prog := cmd
	rest := ""
	if i := strings.IndexAny(cmd, " \t"); i >= 0 {
		prog, rest = cmd[:i], cmd[i:]
	}
	if strings.ContainsAny(prog, "'\"$`\\;|&<>(){}*?") {
		return cmd, nil // shell syntax: leave it to sh
	}
	if !strings.Contains(prog, "/") {
		if isShellWord(prog) {
			return cmd, nil
		}
		if _, err := exec.LookPath(prog); err != nil {
			return "", fmt.Errorf("--exec %q: %s is not a command in PATH: give its path, e.g. ./%s", command, prog, prog)
		}
		return cmd, nil
	}
	if filepath.IsAbs(prog) {
		return cmd, checkExecutable(prog, command)
	}
	abs, err := filepath.Abs(prog)
	if err == nil {
		if _, serr := os.Stat(abs); serr == nil {
			if err := checkExecutable(abs, command); err != nil {
				return "", err
			}
			return shellQuote(abs) + rest, nil
		}
	}
	if repoDir != "" {
		if _, serr := os.Stat(filepath.Join(repoDir, prog)); serr == nil {
			if err := checkExecutable(filepath.Join(repoDir, prog), command); err != nil {
				return "", err
			}
			return cmd, nil // runs from the checkout
		}
	}
	return "", fmt.Errorf("--exec %q: %s does not exist (relative paths are relative to the current directory, or to the repository for a script in the tree)", command, prog)
}

func isShellWord(w string) bool {
	switch w {
	case "sh", "bash", "exit", "true", "false", "test", "[", "exec", "env":
		return true
	}
	return false
}

func checkExecutable(path, command string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--exec %q: %w", command, err)
	}
	if st.IsDir() {
		return fmt.Errorf("--exec %q: %s is a directory, not a program", command, path)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("--exec %q: %s is not executable: chmod +x it, or run it with `sh %s`", command, path, path)
	}
	return nil
}

func shellQuote(s string) string {
	if !strings.ContainsAny(s, " \t\n'\"$`\\;|&<>(){}*?!#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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

func (t *Tester) prepare(ctx context.Context, s *space) error {
	if s.ws != nil {
		return nil
	}
	ws, err := t.Repo.Workspace(ctx, filepath.Join(t.Dir, "work", strconv.Itoa(s.idx)))
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
	var tail tailBuffer
	w := io.MultiWriter(logf, &tail)

	rctx := ctx
	limit := budget
	if t.TimeMode && budget > 0 {
		grace := t.Grace
		if grace <= 0 {
			grace = max(budget/2, 30*time.Second)
		}
		limit = budget + grace
	}
	if limit > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	cmd := exec.CommandContext(rctx, "/bin/sh", "-c", t.Command)
	cmd.Dir = s.ws.Dir
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(),
		"KBISECT_COMMIT="+commit,
		"KBISECT_RUN="+strconv.Itoa(ri.Seq),
		"KBISECT_WORKER="+strconv.Itoa(ri.Worker),
		"KBISECT_JOB="+t.Dir,
		"KBISECT_BUDGET="+strconv.FormatFloat(budget.Seconds(), 'f', -1, 64),
	)
	// Its own process group, killed whole; and killed with us if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	err = cmd.Run()
	out.Elapsed = time.Since(t0)
	ev := evidence{Log: logName, Dir: s.ws.Dir}
	var ee *exec.ExitError
	switch {
	case err == nil:
		out.Verdict = bisect.Pass
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			ev.Exit, ev.Signal = -1, ws.Signal().String()
		} else {
			ev.Exit = ee.ExitCode()
		}
	default:
		return out, fmt.Errorf("run %q on %.12s: %w", t.Command, commit, err)
	}
	if err != nil {
		switch {
		case rctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
			return out, fmt.Errorf("%q on %.12s timed out after %s (log %s)", t.Command, commit, limit, logName)
		case ctx.Err() != nil:
			return out, ctx.Err()
		case ev.Signal != "":
			return out, fmt.Errorf("%q on %.12s killed by %s (log %s)", t.Command, commit, ev.Signal, logName)
		case ev.Exit == ExitSkip:
			out.Verdict = bisect.Skip
		case ev.Exit >= 1 && ev.Exit < 128:
			out.Verdict = bisect.Fail
		default:
			return out, fmt.Errorf("%q on %.12s exited %d (128 and up abort, as in git bisect run; log %s)", t.Command, commit, ev.Exit, logName)
		}
	}
	if out.Verdict != bisect.Pass {
		out.Reason = fmt.Sprintf("exit %d", ev.Exit)
		if l := tail.last(); l != "" {
			out.Reason += ": " + l
		}
	}
	out.Evidence, _ = json.Marshal(ev)
	return out, nil
}

// tailBuffer keeps the end of the output.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

// last returns the last non-empty line, cut to 200 bytes.
func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(t.buf, "\n"), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(string(lines[i])); l != "" {
			if len(l) > 200 {
				l = l[:200]
			}
			return l
		}
	}
	return ""
}
