package testcases

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/vm"
)

// CommitTest is the commit pipeline: it builds a commit of a kernel tree
// (with kbuild: cached, in kbisect's own checkout), boots the kernel as a
// guest pair (on this machine, or wherever Exec runs it) and judges it:
// Pass, Fail, Skip or Error. Every command that tests commits (kbisect
// test, the bisection's kernel tester, validate, the demo) goes through
// it, so all of them map build failures, panics and host faults the same
// way:
//
//   - a commit that does not build with the config (a *kbuild.BuildError
//     or *kbuild.ConfigError, see kbuild.Untestable) is Skip: it says
//     nothing about the bug;
//   - a kernel that panics is Skip too: the commit cannot be tested;
//   - anything else that fails (disk, git, QEMU, a timeout, LAVA) is Error,
//     an infrastructure failure, never Fail.
type CommitTest struct {
	// Build is the build template; Rev is set per commit.
	Build kbuild.Options
	// Run is the run template; the kernels, modules, duration and run
	// directory are set per run.
	Run Options
	// RunRoot receives one directory per run.
	RunRoot string
	// Exec runs the test; nil means Local.
	Exec Executor
}

// CommitResult is what testing a commit (or one step of it) showed.
type CommitResult struct {
	// Verdict is Pass, Fail, Skip or Error; empty after a Build that
	// succeeded (Run judges the kernel).
	Verdict Verdict
	// Reason says why, in one line.
	Reason string
	// Err is the error behind a Skip or an Error: the *kbuild.BuildError
	// or *kbuild.ConfigError of a commit that does not build, or the
	// infrastructure failure. It is nil when the run's report says it.
	Err error
	// Artifact is the built kernel; nil when the build failed.
	Artifact *kbuild.Artifact
	// Report is the run's report; nil when there was no run, or the
	// executor could not start one.
	Report *Report
}

// Test builds rev and runs the test on it once, for duration.
func (ct *CommitTest) Test(ctx context.Context, rev string, duration time.Duration) *CommitResult {
	res := ct.BuildCommit(ctx, rev)
	if res.Artifact == nil {
		return res
	}
	return ct.RunKernel(ctx, res.Artifact, duration, "")
}

// BuildCommit builds rev. The result has the Artifact when it built;
// otherwise its Verdict is Skip (the commit cannot be built with this
// config) or Error.
func (ct *CommitTest) BuildCommit(ctx context.Context, rev string) *CommitResult {
	bo := ct.Build
	bo.Rev = rev
	a, err := kbuild.Build(ctx, bo)
	switch {
	case err == nil:
		return &CommitResult{Artifact: a}
	case kbuild.Untestable(err):
		return &CommitResult{Verdict: Skip, Reason: err.Error(), Err: err}
	default:
		err = fmt.Errorf("build %s: %w", rev, err)
		return &CommitResult{Verdict: Error, Reason: err.Error(), Err: err}
	}
}

// RunKernel runs the test once on a built kernel, for duration, in runDir
// (empty: a new directory under RunRoot), and judges it.
func (ct *CommitTest) RunKernel(ctx context.Context, a *kbuild.Artifact, duration time.Duration, runDir string) *CommitResult {
	o := ct.Run
	kernel, modules := BootImage(a)
	o.Kernels = [2]string{kernel, kernel}
	o.Modules = [2]string{modules, modules}
	o.Duration = duration
	o.RunDir = runDir
	if o.RunDir == "" {
		o.RunDir = filepath.Join(ct.RunRoot, fmt.Sprintf("%s-%s", gitrepo.Short(a.BuiltCommit), time.Now().Format("150405.000")))
	}
	var exec Executor = Local{}
	if ct.Exec != nil {
		exec = ct.Exec
	}
	res := &CommitResult{Artifact: a}
	r, err := exec.Run(ctx, o)
	if err != nil {
		res.Verdict, res.Reason, res.Err = Error, err.Error(), err
		return res
	}
	res.Report = r
	res.Verdict, res.Reason = judge(r)
	return res
}

// Repeat runs the test on a built kernel up to runs times, each for the
// run template's Duration, and stops at the first run that does not pass:
// one failure makes a commit bad (kbisect test). report, if set, receives
// each run's report. The result is the last run's.
func (ct *CommitTest) Repeat(ctx context.Context, a *kbuild.Artifact, runs int, report func(*Report)) *CommitResult {
	res := &CommitResult{Artifact: a}
	for i := 0; i < runs; i++ {
		res = ct.RunKernel(ctx, a, ct.Run.Duration, "")
		if res.Report != nil && report != nil {
			report(res.Report)
		}
		if res.Verdict != Pass {
			break
		}
	}
	return res
}

// judge is the verdict on a commit of one run's report.
func judge(r *Report) (Verdict, string) {
	switch {
	case r.Verdict == Pass || r.Verdict == Fail:
		return r.Verdict, r.Reason
	case r.KernelPanicked():
		return Skip, "the kernel panics: " + r.Reason
	default:
		return Error, r.Reason
	}
}

// BootImage picks what to boot of a built kernel: the vmlinux when QEMU can
// start it directly (PVH entry note: twice as fast as a bzImage under TCG),
// else the bzImage; and its modules directory, if it has modules.
func BootImage(a *kbuild.Artifact) (kernel, modules string) {
	kernel = a.BzImage
	if a.Vmlinux != "" {
		if info, err := vm.InspectKernel(a.Vmlinux); err == nil && vm.QEMUBootsPVH(info) {
			kernel = a.Vmlinux
		}
	}
	if a.Modules != "" && a.Release != "" {
		modules = filepath.Join(a.Modules, "lib", "modules", a.Release)
	}
	return kernel, modules
}
