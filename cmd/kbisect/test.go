package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
	"github.com/spf13/cobra"
)

// Exit codes of `kbisect test`, as `git bisect run` reads them.
const (
	exitGood  = 0
	exitBad   = 1
	exitSkip  = 125
	exitAbort = 128
)

func init() {
	var (
		f       runFlags
		repo    string
		rev     string
		cf      configFlags
		runs    int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "test [--repo R] [--rev X] --config C [run flags]",
		Short: "Build and test one commit; usable as `git bisect run kbisect test ...`",
		Long: `test builds --rev (default HEAD) of --repo (default: the current directory)
in kbisect's own checkout, with your config, and runs the test on it up to
--runs times, stopping at the first failure. Exit status, as git bisect run
reads it: 0 good (every run passed), 1 bad (a run failed), 125 skip (the
commit does not build or its kernel does not boot), 128 abort (the host
failed: no disk, no QEMU, a timeout).

  git bisect start BAD GOOD
  git bisect run kbisect test --config ~/my.config --duration 2m --runs 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			frags, err := cf.selectFragments(f.opts.Hypervisor)
			if err != nil {
				return &exitError{code: exitAbort, err: err}
			}
			if runs < 1 {
				return &exitError{code: exitAbort, err: fmt.Errorf("--runs %d: give at least 1", runs)}
			}
			o, err := f.options("", "")
			if err != nil {
				return &exitError{code: exitAbort, err: err}
			}
			progress := progressFunc(jsonOut)
			o.Progress = progress
			ct := &testcases.CommitTest{
				Build:   kbuild.Options{Repo: repo, Config: cf.config, Fragments: frags},
				Run:     o,
				RunRoot: filepath.Join(cachedir.Dir("runs"), "test-"+time.Now().Format("20060102-150405")),
			}
			if progress != nil {
				ct.Build.Log = os.Stderr
			}
			exec, release, err := f.exec.executor(cmd.Context())
			if err != nil {
				return &exitError{code: exitAbort, err: err}
			}
			defer release()
			ct.Exec = exec
			for i := 1; i <= runs; i++ {
				res, err := ct.Test(cmd.Context(), rev, o.Duration)
				if err != nil {
					return &exitError{code: exitAbort, err: err}
				}
				if res.BuildError != nil {
					fmt.Fprintf(os.Stderr, "kbisect test: skip: %v\n", res.BuildError)
					return &exitError{code: exitSkip}
				}
				r := res.Report
				printReport(r, jsonOut)
				switch r.Verdict {
				case testcases.Fail:
					return &exitError{code: exitBad}
				case testcases.Error:
					if r.KernelPanicked() {
						fmt.Fprintf(os.Stderr, "kbisect test: skip: the kernel does not boot: %s\n", r.Reason)
						return &exitError{code: exitSkip}
					}
					return &exitError{code: exitAbort, err: fmt.Errorf("infrastructure failure: %s", r.Reason)}
				}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	fl := cmd.Flags()
	fl.StringVar(&repo, "repo", ".", "kernel git repository (only read)")
	fl.StringVar(&rev, "rev", "HEAD", "commit to test")
	cf.register(fl, "config", "tinyconfig", "your .config, or defconfig/tinyconfig")
	fl.IntVar(&runs, "runs", 1, "test up to this many times; any failure makes the commit bad")
	fl.BoolVar(&jsonOut, "json", false, "print each run's JSON")
	rootCmd.AddCommand(cmd)
}
