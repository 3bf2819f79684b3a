// Package bisectrun runs a test command as `git bisect run` does: with
// `sh -c` in a checkout kbisect owns, its exit status read as good (0),
// skip (125), bad (1-127 but 125, 126 and 127) or abort (126 and 127: the
// command cannot run or is not found; 128 and up, killed by a signal,
// timed out). The bisection's --exec tester and validate's --exec both
// run their commands through it; `kbisect test` exits with its codes.
package bisectrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/procgroup"
	"github.com/kbisect/kbisect/internal/tailbuf"
)

// Exit statuses of a test command, as `git bisect run` reads them: ExitBad
// stands for 1-127 but 125, 126 and 127; ExitAbort for 128 and up.
const (
	ExitGood  = 0
	ExitBad   = 1
	ExitSkip  = 125
	ExitAbort = 128
	// ExitCannotRun and ExitNotFound are sh's: the command was found but
	// cannot be run, or was not found. They say nothing about the tree.
	ExitCannotRun = 126
	ExitNotFound  = 127
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
	case exit == ExitCannotRun || exit == ExitNotFound:
		return Abort
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
	// Err says why a run is Abort: it exited 126, 127, 128 or more, a
	// signal killed it, it timed out (TimedOut), or it could not start.
	Err      error
	TimedOut bool
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
	// The output goes through a pipe of ours rather than exec's: exec
	// would wait for whatever the command left running to close it.
	pr, pw, err := os.Pipe()
	if err != nil {
		res.Verdict, res.Err = Abort, fmt.Errorf("run %q: %w", c.Shell, err)
		return res, nil
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	copied := make(chan struct{})
	go func() {
		io.Copy(out, pr)
		close(copied)
	}()
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	// Its own process group, killed whole when the context is done, what
	// it leaves running killed when it exits, and all of it killed if
	// kbisect dies.
	err = procgroup.Run(cmd, syscall.SIGKILL)
	res.Elapsed = time.Since(start)
	pw.Close()
	select {
	case <-copied:
	case <-time.After(5 * time.Second): // held open by a process that left the group
	}
	pr.Close()
	<-copied
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
		res.Verdict, res.Err, res.TimedOut = Abort, fmt.Errorf("%q timed out after %s", c.Shell, c.Timeout), true
	case res.Signal != "":
		res.Verdict, res.Err = Abort, fmt.Errorf("%q killed by signal %s", c.Shell, res.Signal)
	default:
		res.Verdict = Classify(res.Exit)
		switch {
		case res.Verdict != Abort:
		case res.Exit == ExitNotFound || res.Exit == ExitCannotRun:
			res.Err = fmt.Errorf("%q exited %d: %s (126 and 127 abort, as in git bisect run)", c.Shell, res.Exit, res.Tail.LastLine(200))
		default:
			res.Err = fmt.Errorf("%q exited %d (128 and up abort, as in git bisect run)", c.Shell, res.Exit)
		}
	}
	return res, nil
}

// Environ is the environment of a test command: ours, without what would
// point its git commands at another repository (gitrepo.RepoVars).
func Environ() []string {
	return gitrepo.WithoutRepoVars(os.Environ())
}

// CommandError is a test command that cannot run: an empty one, a program
// given as a path that does not exist or is not executable. The CLI says
// which flag gave it.
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

// shellChars make a word shell syntax rather than a plain path.
const shellChars = "'\"$`\\;|&<>(){}[]*?~#=!"

// Check checks what can be checked of a test command before it runs: that
// it is not empty, and that a program given as a path (its first word, or
// the first after NAME=value assignments) exists and can be run. The rest
// is sh's: anything else is run as it is (cd d && make, if, for, set -e,
// export, trap, a function), and a command that is not found exits 127,
// an infrastructure error. Check returns command with a program given as a
// path relative to the current directory made absolute, so that it runs
// from the checkouts. A program found in the repository (repoDir) instead
// is left relative: it runs from the tree under test, as `git bisect run
// ./script` does.
func Check(command, repoDir string) (string, error) {
	cmd := strings.TrimSpace(command)
	if cmd == "" {
		return "", &CommandError{Problem: "the test command is empty: give the command that tests the checked-out tree"}
	}
	// Skip the assignments, keeping the text as it is.
	head, rest := "", cmd
	for {
		word, tail := cutWord(rest)
		if !isAssignment(word) {
			break
		}
		blanks := len(tail) - len(strings.TrimLeft(tail, " \t\n"))
		head += rest[:len(rest)-len(tail)+blanks]
		rest = tail[blanks:]
	}
	prog, tail := cutWord(rest)
	if shells[prog] {
		// sh [-options] SCRIPT ...: the script is the program (dash
		// exits 2 when it cannot open it, a "bad" verdict).
		head += rest[:len(rest)-len(tail)]
		for {
			word, after := cutWord(tail)
			if !strings.HasPrefix(word, "-") || strings.HasPrefix(word, "--") {
				break
			}
			if strings.Contains(word, "c") || strings.Contains(word, "s") || strings.Contains(word, "o") {
				return cmd, nil // sh -c '...', commands from stdin, an option's argument: sh's
			}
			head += tail[:len(tail)-len(after)]
			tail = after
		}
		blanks := len(tail) - len(strings.TrimLeft(tail, " \t\n"))
		head, tail = head+tail[:blanks], tail[blanks:]
		script, after := cutWord(tail)
		if script == "" || strings.ContainsAny(script, shellChars) {
			return cmd, nil
		}
		return checkPath(command, repoDir, head, script, after, false)
	}
	if !strings.Contains(prog, "/") || strings.ContainsAny(prog, shellChars) {
		return cmd, nil // a word for sh: a builtin, a keyword, a program in PATH
	}
	return checkPath(command, repoDir, head, prog, tail, true)
}

// shells are the programs whose first operand is a script to run.
var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "/bin/sh": true, "/bin/bash": true, "/bin/dash": true, "/usr/bin/bash": true}

// checkPath checks that path, a word of command between head and tail,
// exists (and is executable when exe), and returns the command with a
// path relative to the current directory made absolute.
func checkPath(command, repoDir, head, path, tail string, exe bool) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &CommandError{command, p + " does not exist"}
		case err != nil:
			return &CommandError{command, err.Error()}
		case st.IsDir():
			return &CommandError{command, p + " is a directory, not a program"}
		case exe && st.Mode()&0o111 == 0:
			return &CommandError{command, fmt.Sprintf("%s is not executable: chmod +x it, or run it with `sh %s`", p, p)}
		}
		return nil
	}
	if filepath.IsAbs(path) {
		if err := check(path); err != nil {
			return "", err
		}
		return head + path + tail, nil
	}
	if abs, err := filepath.Abs(path); err == nil {
		if _, serr := os.Stat(abs); serr == nil {
			if err := check(abs); err != nil {
				return "", err
			}
			return head + shellQuote(abs) + tail, nil
		}
	}
	if repoDir != "" {
		if _, serr := os.Stat(filepath.Join(repoDir, path)); serr == nil {
			if err := check(filepath.Join(repoDir, path)); err != nil {
				return "", err
			}
			return head + path + tail, nil // runs from the checkout
		}
	}
	return "", &CommandError{command, fmt.Sprintf("%s does not exist (relative paths are relative to the current directory, or to the repository for a script in the tree)", path)}
}

// cutWord splits s at its first blank: the word, and the rest from the
// blank on (the blanks kept).
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t\n")
	if i := strings.IndexAny(s, " \t\n"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// isAssignment says whether word is a plain NAME=value.
func isAssignment(word string) bool {
	name, value, ok := strings.Cut(word, "=")
	if !ok || name == "" || strings.ContainsAny(value, shellChars) {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func shellQuote(s string) string {
	if !strings.ContainsAny(s, " \t\n'\"$`\\;|&<>(){}*?!#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
