package testcases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"

	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/vm"
)

// CommitTest tests commits of a kernel tree: it builds each with kbuild
// (cached, in kbisect's own checkout) and runs the testcase on the kernel.
type CommitTest struct {
	// Build is the build template; Rev is set per commit.
	Build kbuild.Options
	// Run is the run template; the kernels, modules, duration and run
	// directory are set per test.
	Run Options
	// RunRoot receives one directory per run.
	RunRoot string
	// Exec runs the test; nil means Local.
	Exec Executor
}

// CommitResult is the outcome of testing one commit.
type CommitResult struct {
	// Artifact is the built kernel; nil when the build failed.
	Artifact *kbuild.Artifact
	// BuildError is set when the commit does not build: the commit cannot
	// be tested (a bisection skips it); it says nothing about the bug.
	BuildError error
	// Report is the run's report; nil when the build failed.
	Report *Report
}

// Test builds rev and runs the test for duration. A non-nil error is an
// infrastructure failure outside the commit (no disk, a broken repository,
// bad options).
func (ct *CommitTest) Test(ctx context.Context, rev string, duration time.Duration) (*CommitResult, error) {
	bo := ct.Build
	bo.Rev = rev
	a, err := kbuild.Build(ctx, bo)
	var be *kbuild.BuildError
	var ce *kbuild.ConfigError
	if errors.As(err, &be) || errors.As(err, &ce) {
		return &CommitResult{BuildError: err}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", rev, err)
	}
	o := ct.Run
	kernel, modules := BootImage(a)
	o.Kernels = [2]string{kernel, kernel}
	o.Modules = [2]string{modules, modules}
	o.Duration = duration
	o.RunDir = filepath.Join(ct.RunRoot, fmt.Sprintf("%s-%s", gitrepo.Short(a.BuiltCommit), time.Now().Format("150405.000")))
	var exec Executor = Local{}
	if ct.Exec != nil {
		exec = ct.Exec
	}
	r, err := exec.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	return &CommitResult{Artifact: a, Report: r}, nil
}

// BootImage picks what to boot of a built kernel: the vmlinux when QEMU can
// start it directly (PVH entry note: twice as fast as a bzImage under TCG),
// else the bzImage; and its modules directory, if it has modules.
func BootImage(a *kbuild.Artifact) (kernel, modules string) {
	kernel = a.BzImage
	if a.Vmlinux != "" {
		if info, err := vm.InspectKernel(a.Vmlinux); err == nil && info.PVH {
			kernel = a.Vmlinux
		}
	}
	if a.Modules != "" && a.Release != "" {
		modules = filepath.Join(a.Modules, "lib", "modules", a.Release)
	}
	return kernel, modules
}
