package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kbisect/kbisect/internal/bisectrun"
	"github.com/kbisect/kbisect/internal/statusline"
	"github.com/kbisect/kbisect/validate"
	"github.com/spf13/cobra"
)

// Exit codes of `kbisect validate` besides 0 (every tested tree answered
// as expected) and 2 (bad input or an infrastructure failure).
const (
	exitValidateContrary     = 1
	exitValidateInconclusive = 3
)

func newValidateCmd() *cobra.Command {
	var (
		k          kernelFlags
		o          validate.Options
		expect     string
		jsonOut    bool
		verboseLog bool
	)
	cmd := &cobra.Command{
		Use:   "validate --repo R --base REV --patches (DIR|MBOX|REV..REV) [--config C --test natt-esp | --exec CMD]",
		Short: "Does a patch fix the bug, does a series break anything: apply, build, test with statistics",
		Long:  help("validate"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("exec") && strings.TrimSpace(o.Exec) == "" {
				return errors.New("--exec is empty: give the command that tests each tree (without --exec, the test is the kernel pipeline)")
			}
			o.Expect = validate.Expect(expect)
			// The validation's lines always; each run's own phases on a
			// terminal or with -v.
			progress := statusline.NewLog(statusline.Stderr())
			defer progress.Close()
			o.Log = statusline.Writer(progress.Phase)
			if o.Exec == "" {
				var runs *statusline.Log
				if progress.Live() || verboseLog {
					runs = progress
				}
				// The repository is set by validate: its own clone.
				ct, release, err := k.pipeline(cmd.Context(), "", runs, o.Log)
				if err != nil {
					return err
				}
				defer release()
				o.Kernel = ct
			}
			rep, err := validate.Validate(cmd.Context(), o)
			var ce *bisectrun.CommandError
			if errors.As(err, &ce) {
				err = fmt.Errorf("--exec %w", err)
			}
			if err != nil {
				return err
			}
			if err := printResult(cmd.OutOrStdout(), rep, jsonOut); err != nil {
				return fmt.Errorf("report as JSON: %w", err)
			}
			switch rep.Outcome() {
			case validate.Contrary:
				return &exitError{code: exitValidateContrary}
			case validate.Undecided:
				return &exitError{code: exitValidateInconclusive}
			}
			return nil
		},
	}
	k.register(cmd.Flags())
	fl := cmd.Flags()
	// A validation runs many times and decides on the first failure: no
	// capture by default, and runs stop at their first corruption.
	fl.Lookup("capture").DefValue = "false"
	k.run.opts.Capture = false
	fl.StringVar(&o.Repo, "repo", ".", "kernel git repository (only read)")
	fl.StringVar(&o.Base, "base", "", "commit the patches apply to")
	fl.StringVar(&o.Patches, "patches", "", "a directory of .patch files, an mbox, or a REV..REV range of --repo")
	fl.BoolVar(&o.Each, "each", false, "build and test every patch of the series, not only its tip")
	fl.StringVar(&expect, "expect", "fix", "the question: fix (does the series fix the base's bug) or no-regression")
	fl.Float64Var(&o.Confidence, "confidence", validate.DefaultConfidence, "probability a conclusion needs")
	fl.DurationVar(&o.Budget, "budget", validate.DefaultBudget, "time for test runs (builds not counted)")
	fl.Float64Var(&o.Tolerance, "tolerance", 0, "no-regression: failures per hour the series may add; with --exec the added chance that a run fails (default: the least the budget can rule out)")
	fl.StringVar(&o.Exec, "exec", "", "test command run in kbisect's checkout of each tree instead of the kernel test (exit codes as git bisect run)")
	fl.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	fl.BoolVarP(&verboseLog, "verbose", "v", false, "also print each run's phases (boot, guests ready, agent logs) when stderr is not a terminal")
	return cmd
}
