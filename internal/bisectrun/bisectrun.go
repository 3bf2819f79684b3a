// Package bisectrun runs a test command as `git bisect run` does: with
// `sh -c` in a checkout kbisect owns, its exit status read as good (0),
// skip (125), bad (1-127) or abort (128 and up, killed by a signal, timed
// out). The bisection's --exec tester and validate's --exec both run their
// commands through it; `kbisect test` exits with its codes.
package bisectrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/tailbuf"
)

// Exit statuses of a test command, as `git bisect run` reads them: ExitBad
// stands for 1-127 but 125, ExitAbort for 128 and up.
const (
	ExitGood  = 0
	ExitBad   = 1
	ExitSkip  = 125
	ExitAbort = 128
)

// Verdict is what a run of the command said about the tree.
type Verdict string

// Verdicts.
const (
	Good  Verdict = "good"
	Bad   Verdict = "bad"
	Skip  Verdict = "skip"
	Abort Verdict = "abort" // the command, or the host, failed: says nothing
)

// Classify reads an exit status as git bisect run does.
func Classify(exit int) Verdict {
	switch {
	case exit == ExitGood:
		return Good
	case exit == ExitSkip:
		return Skip
	case exit > 0 && exit < ExitAbort:
		return Bad
	default:
		return Abort
	}
}

// Command is one run of a test command.
type Command struct {
	// Shell is the command line, run with /bin/sh -c.
	Shell string
	// Dir is where it runs (the checkout of the tree under test).
	Dir string
	// Env is added to the environment: ours, less the variables that would
	// point its git commands at another repository (GIT_DIR and co).
	Env []string
	// Output, if set, receives the command's standard output and error
	// (a log file); the end of it is kept in Result.Tail anyway.
	Output io.Writer
	// Timeout kills the command after this long (0: no limit).
	Timeout time.Duration
}

// Result is how a run ended.
type Result struct {
	Verdict Verdict
	// Exit is the exit status; -1 when a signal killed the command.
	Exit   int
	Signal string
	// Elapsed is the run's wall time.
	Elapsed time.Duration
	// Tail holds the end of the command's output (64 KiB).
	Tail *tailbuf.Buffer
	// Err says why a run is Abort: it exited 128 or more, a signal killed
	// it, it timed out, or it could not start.
	Err error
}

// Reason says in one line how the run ended: "exit N: <its last output
// line>".
func (r *Result) Reason() string {
	s := fmt.Sprintf("exit %d", r.Exit)
	if r.Signal != "" {
		s = "killed by signal " + r.Signal
	}
	if l := r.Tail.LastLine(200); l != "" {
		s += ": " + l
	}
	return s
}

// Run runs the command until it exits, times out or ctx is done. The
// error is ctx's when it was cancelled; every other failure is in the
// Result (Abort).
func Run(ctx context.Context, c Command) (*Result, error) {
	res := &Result{Tail: tailbuf.New(64 << 10)}
	rctx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(rctx, "/bin/sh", "-c", c.Shell)
	cmd.Dir = c.Dir
	cmd.Env = append(Environ(), c.Env...)
	var out io.Writer = res.Tail
	if c.Output != nil {
		out = io.MultiWriter(c.Output, res.Tail)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed whole; and killed with us if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res.Elapsed = time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Exit, res.Signal = -1, ws.Signal().String()
		} else {
			res.Exit = ee.ExitCode()
		}
	default:
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Verdict, res.Err = Abort, fmt.Errorf("run %q: %w", c.Shell, err)
		return res, nil
	}
	if err != nil && ctx.Err() != nil {
		return res, ctx.Err()
	}
	switch {
	case err != nil && rctx.Err() == context.DeadlineExceeded:
		res.Verdict, res.Err = Abort, fmt.Errorf("%q timed out after %s", c.Shell, c.Timeout)
	case res.Signal != "":
		res.Verdict, res.Err = Abort, fmt.Errorf("%q killed by signal %s", c.Shell, res.Signal)
	default:
		res.Verdict = Classify(res.Exit)
		if res.Verdict == Abort {
			res.Err = fmt.Errorf("%q exited %d (128 and up abort, as in git bisect run)", c.Shell, res.Exit)
		}
	}
	return res, nil
}

// Environ is the environment of a test command: ours, without what would
// point its git commands at another repository.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// CommandError is a test command that cannot run: an empty one, a program
// that does not exist or is not executable. The CLI says which flag gave
// it.
type CommandError struct {
	Command string
	Problem string
}

func (e *CommandError) Error() string {
	if e.Command == "" {
		return e.Problem
	}
	return fmt.Sprintf("%q: %s", e.Command, e.Problem)
}

// Check checks that the program of command (its first word) can be run,
// and returns command with a program given as a relative path made
// absolute (relative to the current directory), so that it runs from the
// checkouts. A program found in the repository (repoDir) is left
// relative: it runs from the tree under test, as `git bisect run
// ./script` does.
func Check(command, repoDir string) (string, error) {
	cmd := strings.TrimSpace(command)
	if cmd == "" {
		return "", &CommandError{Problem: "the test command is empty: give the command that tests the checked-out tree"}
	}
	prog := cmd
	rest := ""
	if i := strings.IndexAny(cmd, " \t"); i >= 0 {
		prog, rest = cmd[:i], cmd[i:]
	}
	if strings.ContainsAny(prog, "'\"$`\\;|&<>(){}*?") || strings.ContainsRune(prog, '=') {
		return cmd, nil // shell syntax or an assignment: leave it to sh
	}
	if !strings.Contains(prog, "/") {
		if isShellWord(prog) {
			return cmd, nil
		}
		if _, err := exec.LookPath(prog); err != nil {
			return "", &CommandError{command, fmt.Sprintf("%s is not a command in PATH: give its path, e.g. ./%s", prog, prog)}
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
	return "", &CommandError{command, fmt.Sprintf("%s does not exist (relative paths are relative to the current directory, or to the repository for a script in the tree)", prog)}
}

func isShellWord(w string) bool {
	switch w {
	case "sh", "bash", "exit", "true", "false", "test", "[", "exec", "env",
		"if", "for", "while", "until", "case", "{", "(", "!", "set", "cd", ".":
		return true
	}
	return false
}

func checkExecutable(path, command string) error {
	st, err := os.Stat(path)
	if err != nil {
		return &CommandError{command, err.Error()}
	}
	if st.IsDir() {
		return &CommandError{command, path + " is a directory, not a program"}
	}
	if st.Mode()&0o111 == 0 {
		return &CommandError{command, fmt.Sprintf("%s is not executable: chmod +x it, or run it with `sh %s`", path, path)}
	}
	return nil
}

func shellQuote(s string) string {
	if !strings.ContainsAny(s, " \t\n'\"$`\\;|&<>(){}*?!#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
