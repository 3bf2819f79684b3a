package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/internal/bisectrun"
	"github.com/kbisect/kbisect/internal/cliflags"
	"github.com/kbisect/kbisect/internal/statusline"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
)

// configFlags are the kernel config flags every building command shares:
// the base config and the fragments merged into it. One rule for all of
// them: the default fragments (what the VM and the test need, xen-guest too
// under --hypervisor xen) are always merged, --fragment adds to them, and
// --no-default-fragments leaves only the --fragment ones.
type configFlags struct {
	config     string
	fragments  []string
	noDefaults bool
}

// register adds --NAME (the base config, default def), --fragment and
// --no-default-fragments.
func (c *configFlags) register(fl *pflag.FlagSet, name, def, usage string) {
	fl.StringVar(&c.config, name, def, usage)
	fl.StringArrayVar(&c.fragments, "fragment", nil, "config fragment to merge, in addition to the default ones: a built-in name ("+strings.Join(kconfigs.BuiltinNames(), ", ")+") or a file (repeatable)")
	fl.BoolVar(&c.noDefaults, "no-default-fragments", false, "merge only the --fragment ones (a config of yours that already has what the VM and test need)")
}

// selectFragments returns the fragments for a kernel the given hypervisor
// boots ("" or "qemu": QEMU only).
func (c *configFlags) selectFragments(hypervisor string) ([]*kconfigs.Fragment, error) {
	return kconfigs.SelectFor(hypervisor, c.fragments, !c.noDefaults, c.config)
}

// kernelFlags are the flags of the kernel test of a commit: its config and
// the run options (test, wire, hypervisor, executor).
type kernelFlags struct {
	run runFlags
	cf  configFlags
}

func (k *kernelFlags) register(fl *pflag.FlagSet) {
	k.run.register(fl, false)
	k.cf.register(fl, "config", "tinyconfig", "kernel config: your .config, or defconfig/tinyconfig")
}

// pipeline makes the commit pipeline the flags ask for, for the kernel
// tree repo: the one constructor of kbisect test, bisect (start and
// resume) and validate. Runs report to progress and builds log to
// buildLog (either may be nil); release frees the executor. ctx is not
// kept.
func (k *kernelFlags) pipeline(ctx context.Context, repo string, progress *statusline.Log, buildLog io.Writer) (ct *testcases.CommitTest, release func(), err error) {
	// A config file that cannot be read is bad input now, not a build
	// error of every commit later.
	if !kconfigs.IsBaseName(k.cf.config) {
		if _, err := kconfigs.ReadConfig(k.cf.config); err != nil {
			return nil, nil, fmt.Errorf("--config: %w: give your .config, or a base config such as defconfig or tinyconfig", err)
		}
	}
	frags, err := k.cf.selectFragments(k.run.opts.Hypervisor)
	if err != nil {
		return nil, nil, err
	}
	o, err := k.run.options(false)
	if err != nil {
		return nil, nil, err
	}
	if progress != nil {
		o.Progress, o.Status = progress.Phase, progress.Status
	}
	exec, release, err := k.run.exec.executor(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &testcases.CommitTest{
		Build:   kbuild.Options{Repo: repo, Config: k.cf.config, Fragments: frags, Log: buildLog},
		Run:     o,
		RunRoot: o.RunDir,
		Exec:    exec,
	}, release, nil
}

func newTestCmd() *cobra.Command {
	var (
		k       kernelFlags
		repo    string
		rev     string
		runs    int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "test [--repo R] [--rev X] --config C [run flags]",
		Short: "Build and test one commit; usable as `git bisect run kbisect test ...`",
		Long:  help("test"),
		// Under git bisect run, exit 2 would mark the commit bad: a
		// mistyped flag must stop the bisection (128), not steer it.
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return testUsageError(fmt.Errorf("%w (see kbisect test --help)", err))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			abort := func(err error) error { return &exitError{code: bisectrun.ExitAbort, err: err} }
			if runs < 1 {
				return abort(fmt.Errorf("--runs %d: give at least 1", runs))
			}
			progress := statusline.NewLog(statusline.Stderr())
			defer progress.Close()
			ct, release, err := k.pipeline(cmd.Context(), repo, progress, statusline.Writer(progress.Phase))
			if err != nil {
				return abort(err)
			}
			defer release()
			res := ct.BuildCommit(cmd.Context(), rev)
			if res.Artifact != nil {
				res = ct.Repeat(cmd.Context(), res.Artifact, runs, func(r *testcases.Report) {
					// The verdict is the exit status, whatever stdout takes.
					printResult(cmd.OutOrStdout(), r, jsonOut)
				})
			}
			switch res.Verdict {
			case testcases.Pass:
				return nil
			case testcases.Fail:
				return &exitError{code: bisectrun.ExitBad}
			case testcases.Skip:
				fmt.Fprintf(os.Stderr, "kbisect test: skip: %s\n", res.Reason)
				return &exitError{code: bisectrun.ExitSkip}
			default:
				return abort(fmt.Errorf("infrastructure failure: %s", res.Reason))
			}
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return testUsageError(cliflags.SuggestFlag(c, err)) })
	k.register(cmd.Flags())
	fl := cmd.Flags()
	fl.StringVar(&repo, "repo", ".", "kernel git repository (only read)")
	fl.StringVar(&rev, "rev", "HEAD", "commit to test")
	fl.IntVar(&runs, "runs", 1, "test up to this many times; any failure makes the commit bad")
	fl.BoolVar(&jsonOut, "json", false, "print each run's JSON")
	return cmd
}

// testUsageError is kbisect test's answer to bad usage: exit 128, which
// aborts a git bisect run instead of marking the commit bad.
func testUsageError(err error) error {
	return &exitError{code: bisectrun.ExitAbort, err: fmt.Errorf("%w (exit 128 stops git bisect run)", err)}
}
