package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/bisect/kernel"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// kernelFlags are the flags of the kernel test of `kbisect bisect`: the
// kernel config and the run options.
type kernelFlags struct {
	run runFlags
	cf  configFlags
}

var bisectKernel kernelFlags

func init() {
	addKernelTestFlags = func(fs *pflag.FlagSet) {
		bisectKernel.run.register(fs, false)
		bisectKernel.cf.register(fs, "config", "tinyconfig", "kernel config: your .config, or defconfig/tinyconfig")
		// The search chooses each run's length (--run-time, --max-run-time).
		fs.MarkHidden("duration")
	}
	kernelTester = func(cmd *cobra.Command, repo *gitrepo.Repo) (bisect.Tester, error) {
		return bisectKernel.tester(repo.Dir, nil)
	}
}

// tester makes the kernel Tester: build each commit with the config, run
// the test on it. Runs stop at their first failure.
func (k *kernelFlags) tester(repo string, progress func(string)) (*kernel.Tester, error) {
	frags, err := k.cf.selectFragments(k.run.opts.Hypervisor)
	if err != nil {
		return nil, err
	}
	o, err := k.run.options("", "")
	if err != nil {
		return nil, err
	}
	o.StopOnFail = true
	o.Progress = progress
	ct := &testcases.CommitTest{
		Build:   kbuild.Options{Repo: repo, Config: k.cf.config, Fragments: frags},
		Run:     o,
		RunRoot: filepath.Join(o.RunDir, "runs"),
	}
	if progress != nil {
		ct.Build.Log = os.Stderr
	}
	if k.run.exec.kind != "" && k.run.exec.kind != "local" {
		// The artifact server lives as long as the process.
		exec, _, err := k.run.exec.executor(context.Background())
		if err != nil {
			return nil, err
		}
		ct.Exec = exec
	}
	return &kernel.Tester{CT: ct}, nil
}
