package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/validate"
	"github.com/spf13/cobra"
)

// Exit codes of `kbisect validate` besides 0 (every tested tree answered
// as expected) and 2 (bad input or an infrastructure failure).
const (
	exitValidateContrary     = 1
	exitValidateInconclusive = 3
)

func init() {
	var (
		f          runFlags
		o          validate.Options
		cf         configFlags
		expect     string
		jsonOut    bool
		verboseLog bool
	)
	cmd := &cobra.Command{
		Use:   "validate --repo R --base REV --patches (DIR|MBOX|REV..REV) [--config C --test natt-esp | --exec CMD]",
		Short: "Does a patch fix the bug, does a series break anything: apply, build, test with statistics",
		Long: `validate applies a patch series (a directory of .patch files in name order,
an mbox, or a REV..REV range of --repo) on --base, as git am would, in a clone
kbisect owns (your repository is only read). It builds the base and the
patched tree, runs the test on both as often as the statistics need, and
prints a table per patch: applies, builds (with new compiler warnings in the
files the patch touches), boots, verdict, runs, failure rate per hour with a
95% interval, and the conclusion.

--expect fix (the default): a failure of the patched kernel proves the bug is
still there ("does not fix"); otherwise the base's failure rate, measured
first, says how long the patched kernel must pass for P(fixed) to reach
--confidence ("fixes"). --expect no-regression: the patched kernel is
compared with the base ("regression" when it fails more often, "no
regression" when it does not add failures at --tolerance per hour or more;
by default the smallest rate the budget can rule out). Without enough
budget the answer is "inconclusive: need N more minutes".

The budget counts the time of test runs, not builds. Without --each only the
tip of the series is built and tested; --each tests every patch.

--exec CMD runs CMD (with sh -c) in kbisect's checkout of each tree instead
of the kernel test, as git bisect run does: exit 0 good, 125 skip, 1-127 bad,
>= 128 an infrastructure failure; the run's time is its test time.

Exit status: 0 every tested tree answered as expected, 1 one did not (does
not fix, regression, does not apply, build or boot), 3 inconclusive, 2 bad
input or a host failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Expect = validate.Expect(expect)
			progress := progressFunc(jsonOut)
			if verboseLog && !jsonOut {
				progress = func(msg string) { fmt.Fprintln(os.Stderr, msg) }
			}
			if progress != nil {
				o.Log = lineWriter(progress)
			}
			if o.Exec == "" {
				frags, err := cf.selectFragments(f.opts.Hypervisor)
				if err != nil {
					return err
				}
				ro, err := f.options("", "")
				if err != nil {
					return err
				}
				if f.exec.kind != "" && f.exec.kind != "local" {
					return fmt.Errorf("--executor %s: validate runs locally for now; use kbisect run or bisect with --executor %s", f.exec.kind, f.exec.kind)
				}
				// Each run's own progress only on a terminal: -v asks
				// for the validation's lines, not every second of traffic.
				ro.Progress = progressFunc(jsonOut)
				o.Kernel = &validate.KernelTest{
					Build:   kbuild.Options{Config: cf.config, Fragments: frags},
					Run:     ro,
					RunRoot: ro.RunDir,
				}
				if progress != nil {
					o.Kernel.Build.Log = o.Log
				}
			}
			rep, err := validate.Validate(cmd.Context(), o)
			if err != nil {
				return err
			}
			if jsonOut {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return fmt.Errorf("report as JSON: %w", err)
				}
				fmt.Println(string(b))
			} else {
				printValidation(os.Stdout, rep)
			}
			if code := validationExit(rep); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	fl := cmd.Flags()
	// A validation runs many times and decides on the first failure: no
	// capture by default, and runs stop at their first corruption.
	fl.Lookup("capture").DefValue = "false"
	f.opts.Capture = false
	fl.StringVar(&o.Repo, "repo", ".", "kernel git repository (only read)")
	fl.StringVar(&o.Base, "base", "", "commit the patches apply to")
	fl.StringVar(&o.Patches, "patches", "", "a directory of .patch files, an mbox, or a REV..REV range of --repo")
	cf.register(fl, "config", "tinyconfig", "your .config, or defconfig/tinyconfig")
	fl.BoolVar(&o.Each, "each", false, "build and test every patch of the series, not only its tip")
	fl.StringVar(&expect, "expect", "fix", "the question: fix (does the series fix the base's bug) or no-regression")
	fl.Float64Var(&o.Confidence, "confidence", validate.DefaultConfidence, "probability a conclusion needs")
	fl.DurationVar(&o.Budget, "budget", validate.DefaultBudget, "time for test runs (builds not counted)")
	fl.Float64Var(&o.Tolerance, "tolerance", 0, "no-regression: failures per hour the series may add; with --exec the added chance that a run fails (default: the least the budget can rule out)")
	fl.StringVar(&o.Exec, "exec", "", "test command run in kbisect's checkout of each tree instead of the kernel test (exit codes as git bisect run)")
	fl.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	fl.BoolVarP(&verboseLog, "verbose", "v", false, "print progress even when stderr is not a terminal")
	rootCmd.AddCommand(cmd)
}

// lineWriter turns written lines into progress messages.
type lineWriter func(string)

func (w lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w(l)
	}
	return len(p), nil
}

// validationExit maps the report to the exit status.
func validationExit(rep *validate.Report) int {
	code := 0
	for _, r := range rep.Patches {
		switch r.Conclusion {
		case validate.Fixes, validate.NoRegression, "":
		case validate.Inconclusive:
			if code == 0 {
				code = exitValidateInconclusive
			}
		default:
			code = exitValidateContrary
		}
	}
	return code
}

// printValidation prints the report as a table and the details below it.
func printValidation(w io.Writer, rep *validate.Report) {
	test := rep.Test
	if rep.RunSeconds > 0 {
		test += fmt.Sprintf(", %s runs", time.Duration(rep.RunSeconds*float64(time.Second)))
	}
	fmt.Fprintf(w, "base %s %q; test %s; expect %s at confidence %g; budget %s, %s spent in runs\n\n",
		rep.Base[:12], rep.BaseSubject, test, rep.Expect, rep.Confidence, minutes(rep.BudgetMinutes), minutes(rep.SpentMinutes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rateHead := "RATE/H [95%]"
	if rep.RateUnit == "per run" {
		rateHead = "P(FAIL)/RUN [95%]"
	}
	fmt.Fprintln(tw, "#\tPATCH\tAPPLIES\tBUILDS\tBOOTS\tVERDICT\tRUNS\tFAILS\tTEST TIME\t"+rateHead+"\tCONCLUSION")
	rows := append([]*validate.Row{rep.BaseResult}, rep.Patches...)
	for _, r := range rows {
		idx := fmt.Sprint(r.Index)
		if r.Index == 0 {
			idx = "-"
		}
		name := r.Name
		if len(name) > 40 {
			name = name[:37] + "..."
		}
		applies := orDash(r.Applies)
		if r.Index == 0 {
			applies = "-"
		}
		rate, runs, fails, minutes := "-", "-", "-", "-"
		if r.Runs > 0 {
			rate = fmt.Sprintf("%s [%s, %s]", num(r.Rate), num(r.RateLow), num(r.RateHigh))
			runs, fails, minutes = fmt.Sprint(r.Runs), fmt.Sprint(r.Failures), testTime(r.SpentMinutes)
			if rep.Unit == "minute" {
				minutes = testTime(r.Exposure)
			}
		}
		concl := orDash(r.Conclusion)
		switch {
		case r.Conclusion == validate.Inconclusive && r.Need > 0 && rep.Unit == "run":
			concl = fmt.Sprintf("inconclusive: need %.0f more runs", math.Ceil(r.Need))
		case r.Conclusion == validate.Inconclusive && r.Need > 0:
			concl = fmt.Sprintf("inconclusive: need %.0f more minutes", math.Ceil(r.Need))
		case r.Probability > 0 && r.Conclusion != validate.DoesNotFix && r.Conclusion != validate.Inconclusive:
			concl += fmt.Sprintf(" (%.3f)", r.Probability)
		case r.Applies == "yes" && !r.Tested && r.Index > 0:
			concl = "(tested in the tip)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", idx, name, applies, buildCell(r),
			orDash(r.Boots), orDash(r.Verdict), runs, fails, minutes, rate, concl)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		label := fmt.Sprintf("%d %s", r.Index, r.Name)
		if r.Index == 0 {
			label = r.Name
		}
		if r.Detail != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", label, r.Conclusion, r.Detail)
		}
		if b := r.Build; b != nil {
			for _, wn := range b.Warnings {
				fmt.Fprintf(w, "%s: new warning: %s\n", label, wn)
			}
			if len(b.Uncompared) > 0 {
				fmt.Fprintf(w, "%s: the base's build log does not show %s compiled: its warnings there were not compared\n", label, strings.Join(b.Uncompared, ", "))
			}
		}
	}
	fmt.Fprintf(w, "\nworkspace: %s\n", rep.Workspace)
}

func buildCell(r *validate.Row) string {
	b := r.Build
	if b == nil {
		return "-"
	}
	if !b.OK {
		return "no"
	}
	s := "yes"
	if n := len(b.Warnings); n > 0 {
		s = fmt.Sprintf("yes, %d new warning(s)", n)
	}
	return s
}

// minutes prints a time given in minutes.
func minutes(m float64) string {
	return time.Duration(m * float64(time.Minute)).Round(time.Second).String()
}

// testTime prints minutes of test: seconds when short.
func testTime(m float64) string {
	if m < 1 {
		return fmt.Sprintf("%.1fs", m*60)
	}
	return minutes(m)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// num prints a rate with sensible precision.
func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x < 1:
		return fmt.Sprintf("%.2g", x)
	case x < 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
