package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
)

// kernelTester builds trees with kbuild (in kbuild's own checkout of
// kbisect's clone) and runs the testcase on a guest pair, as
// testcases.CommitTest does; runs stop at their first failure, so a failed
// run contributes its time to that failure.
type kernelTester struct {
	o         *KernelTest
	repo      string
	cacheDir  string
	log       func(string, ...any)
	artifacts map[*Row]*kbuild.Artifact
	runRoot   string
}

func (k *kernelTester) prepare(ctx context.Context, row, base *Row, files []string) error {
	if k.artifacts == nil {
		k.artifacts = map[*Row]*kbuild.Artifact{}
	}
	bo := k.o.Build
	bo.Repo, bo.Rev = k.repo, row.Commit
	if bo.CacheDir == "" {
		bo.CacheDir = k.cacheDir
	}
	k.log("building %s (%s)", row.Name, row.Commit[:12])
	start := time.Now()
	a, err := kbuild.Build(ctx, bo)
	var be *kbuild.BuildError
	var ce *kbuild.ConfigError
	switch {
	case errors.As(err, &be):
		row.Build = &BuildInfo{Error: cleanLine(be.FirstError), Log: be.Log, Seconds: time.Since(start).Seconds()}
		row.Conclusion, row.Detail = DoesNotBuild, "build failed: "+row.Build.Error+" (log: "+be.Log+")"
	case errors.As(err, &ce):
		row.Build = &BuildInfo{Error: ce.Error(), Seconds: time.Since(start).Seconds()}
		row.Conclusion, row.Detail = DoesNotBuild, ce.Error()
	case err != nil:
		return fmt.Errorf("build %s: %w", row.Name, err)
	default:
		row.Build = &BuildInfo{OK: true, Log: a.Log, CacheHit: a.CacheHit, Seconds: a.Elapsed.Seconds()}
		k.artifacts[row] = a
	}
	if base != nil && base.Build != nil && base.Build.Log != "" && row.Build.Log != "" {
		bl, err1 := parseBuildLog(base.Build.Log)
		pl, err2 := parseBuildLog(row.Build.Log)
		if err1 == nil && err2 == nil {
			row.Build.Warnings, row.Build.Uncompared = newWarnings(bl, pl, files)
		}
	}
	if row.Build.OK {
		k.log("built %s (cache hit %v, %.0fs), %d new warning(s) in the files it touches", row.Name, row.Build.CacheHit, row.Build.Seconds, len(row.Build.Warnings))
	} else {
		k.log("%s does not build: %s", row.Name, row.Build.Error)
	}
	return nil
}

func (k *kernelTester) run(ctx context.Context, row *Row) (runResult, error) {
	a := k.artifacts[row]
	if a == nil {
		return runResult{}, fmt.Errorf("internal error: %s was not built", row.Name)
	}
	if k.runRoot == "" {
		k.runRoot = k.o.RunRoot
		if k.runRoot == "" {
			k.runRoot = filepath.Join(cachedir.Dir("runs"), "validate-"+time.Now().Format("20060102-150405"))
		}
	}
	o := k.o.Run
	kernel, modules := testcases.BootImage(a)
	o.Kernels = [2]string{kernel, kernel}
	o.Modules = [2]string{modules, modules}
	o.StopOnFail = true
	role := "base"
	if row.Index > 0 {
		role = fmt.Sprintf("patch%d", row.Index)
	}
	o.RunDir = filepath.Join(k.runRoot, fmt.Sprintf("%s-%s-%03d", role, row.Commit[:12], row.Runs+1))
	start := time.Now()
	r, err := testcases.Run(ctx, o)
	if err != nil {
		return runResult{}, err
	}
	// The receiver's time includes waiting for the sender and draining:
	// traffic, and so exposure to the bug, lasts at most the duration.
	res := runResult{wall: time.Since(start), exposure: min(r.TestSeconds/60, o.Duration.Minutes()), reason: r.Reason}
	if res.exposure <= 0 {
		res.exposure = o.Duration.Minutes()
	}
	switch r.Verdict {
	case testcases.Pass:
		res.outcome = pass
	case testcases.Fail:
		res.outcome = fail
	default:
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.outcome = infra
		for _, g := range r.Guests {
			if g.Outcome == "panic" {
				res.outcome = skip
				res.reason = "the kernel does not boot: " + r.Reason
			}
		}
		res.reason += " (run dir " + r.RunDir + ")"
	}
	return res, nil
}

// execTester runs a command in kbisect's checkout of each tree, as git
// bisect run does: exit 0 good, 125 skip, 1-127 bad, >= 128 (or a signal)
// an infrastructure failure. Each run is one trial, whatever its length.
type execTester struct {
	cmd     string
	clone   *Clone
	runRoot string
	// current is the commit checked out.
	current string
}

func (x *execTester) prepare(ctx context.Context, row, base *Row, files []string) error {
	return nil
}

func (x *execTester) run(ctx context.Context, row *Row) (runResult, error) {
	if x.current != row.Commit {
		// Like git bisect, keep untracked files (the command's build
		// outputs) across checkouts.
		if _, err := runGit(ctx, x.clone.Dir, nil, nil, "checkout", "--quiet", "--force", "--detach", row.Commit); err != nil {
			return runResult{}, fmt.Errorf("check out %s in %s: %w", row.Name, x.clone.Dir, err)
		}
		x.current = row.Commit
	}
	if err := os.MkdirAll(x.runRoot, 0o755); err != nil {
		return runResult{}, err
	}
	role := "base"
	if row.Index > 0 {
		role = fmt.Sprintf("patch%d", row.Index)
	}
	logPath := filepath.Join(x.runRoot, fmt.Sprintf("%s-%03d.log", role, row.Runs+1))
	var out tailBuffer
	cmd := exec.CommandContext(ctx, "sh", "-c", x.cmd)
	cmd.Dir = x.clone.Dir
	cmd.Env = append(execEnv(), "KBISECT_COMMIT="+row.Commit, "KBISECT_TREE="+role)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	// A command only says whether the run failed: each run is one trial.
	res := runResult{wall: time.Since(start), exposure: 1}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 128 // killed by a signal
		}
	default:
		return res, fmt.Errorf("--exec %s: %w", x.cmd, err)
	}
	res.reason = fmt.Sprintf("exit %d", code)
	if last := lastLine(out.String()); last != "" {
		res.reason += ": " + last
	}
	// Keep the output of the first run of each tree and of every run that
	// did not pass (the last 64 KiB of it).
	if code != 0 || row.Runs == 0 {
		if err := os.WriteFile(logPath, out.Bytes(), 0o644); err == nil {
			res.reason += " (log " + logPath + ")"
		}
	}
	switch {
	case code == 0:
		res.outcome = pass
	case code == 125:
		res.outcome = skip
	case code < 128:
		res.outcome = fail
	default:
		res.outcome = infra
	}
	return res, nil
}

// execEnv is the environment of an --exec command: ours, without what
// would point its git commands at another repository.
func execEnv() []string {
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

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct{ bytes.Buffer }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.Buffer.Write(p)
	if t.Len() > 128<<10 {
		b := append([]byte(nil), t.Bytes()[t.Len()-64<<10:]...)
		t.Reset()
		t.Buffer.Write(b)
	}
	return len(p), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}
