package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/bisect/exectest"
	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/gitrepo"
)

// kernelTester makes the Tester of the kernel pipeline (build + kbisect
// run) from the kernel-test flags of cmd. nil until the pipeline is wired
// in. It and addKernelTestFlags are read when a command runs, so they may
// be set from any init function.
var kernelTester func(cmd *cobra.Command, repo *gitrepo.Repo) (bisect.Tester, error)

// addKernelTestFlags registers the kernel test's flags (config, test
// options) on `kbisect bisect` and `kbisect bisect resume`. The values given
// are stored in the job directory, opaque, and given back on resume.
var addKernelTestFlags func(*pflag.FlagSet)

// Exit statuses of `kbisect bisect` beyond 0 (culprit found).
const (
	exitNoRegression = 3
	exitInconclusive = 4
	exitInfra        = 5
	exitInterrupted  = 130
)

type bisectFlags struct {
	repo, good, bad, exec string
	strategy              string
	confidence            float64
	budget                string
	unit                  string
	runTime, maxRunTime   time.Duration
	timeout               time.Duration
	buildCost             float64
	parallel              int
	job                   string
	asJSON                bool
	verifyRevert          bool
	maxRuns               int
	maxTime               time.Duration
	retries               int
	ktNames               []string // kernel-test flag names
	ktAdded               bool
}

func init() {
	var bf bisectFlags
	cmd := &cobra.Command{
		Use:   "bisect --repo R --good G --bad B [--exec CMD] [flags]",
		Short: "Find the commit that introduced a sporadic bug",
		Long: `bisect finds the first bad commit between --good and --bad when the test fails
only sometimes. A fail proves a commit bad; a pass is weighed by how often a bad
commit fails, a rate estimated as the search goes. The default strategy stops
when one commit holds --confidence (0.99) and says so; "classic" is git bisect
with optional repeats (classic:5).

The test is --exec CMD, run with sh -c in a checkout kbisect owns (the user's
repository is never touched), as git bisect run does: exit 0 good, 125 skip,
1-127 bad, 128 and up (or killed, or timed out) an infrastructure error, retried.
The command sees KBISECT_COMMIT, KBISECT_RUN, KBISECT_WORKER, KBISECT_JOB and
KBISECT_BUDGET. Without --exec the test is the kernel pipeline (build + run).

Before searching, bad must fail within --budget (a number of runs, e.g. 200,
or test time, e.g. 30m). The job directory (--job) holds an fsynced journal:
after a crash, kbisect bisect resume DIR loses at most the runs in flight.

Exit status: 0 found, 3 no regression in the range, 4 inconclusive, 5
infrastructure errors, 130 interrupted (resumable), 2 bad input.`,
		// The kernel test's flags come from a hook that may be set after
		// this init runs: they are added, and the flags parsed, in RunE.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if !bf.ktAdded {
				bf.ktNames, bf.ktAdded = registerKernelFlags(f), true
			}
			if err := f.Parse(args); err != nil {
				return fmt.Errorf("%w (see kbisect bisect --help)", err)
			}
			if help, _ := f.GetBool("help"); help {
				return cmd.Help()
			}
			if f.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: kbisect bisect takes flags, or one of resume, status, log, report", f.Arg(0))
			}
			return runBisect(cmd, &bf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bf.repo, "repo", ".", "git repository to bisect (never modified)")
	f.StringVar(&bf.good, "good", "", "a commit without the bug")
	f.StringVar(&bf.bad, "bad", "", "a commit with the bug")
	f.StringVar(&bf.exec, "exec", "", "command that tests the checked-out tree (exit codes as git bisect run)")
	f.StringVar(&bf.strategy, "strategy", "bayes", "bayes, or classic[:K] (git bisect, K passes make a commit good)")
	f.Float64Var(&bf.confidence, "confidence", 0.99, "stop when one commit is the first bad one with this probability")
	f.StringVar(&bf.budget, "budget", "30m", "bad must fail within this: a number of runs (200) or test time (30m; with --unit runs, at most 1000 runs)")
	f.StringVar(&bf.unit, "unit", "", "runs (each run a trial; default with --exec) or time (failures per minute of a test that stops at its first failure; default for kernels)")
	f.DurationVar(&bf.runTime, "run-time", time.Minute, "time unit: the shortest run the search asks for")
	f.DurationVar(&bf.maxRunTime, "max-run-time", 0, "time unit: the longest run (default 16x --run-time)")
	f.DurationVar(&bf.timeout, "timeout", 0, "runs unit: time limit of one run, then an infrastructure error (0: none); time unit with --exec: how long past its run length a command may take (default half of it, at least 30s)")
	f.Float64Var(&bf.buildCost, "build-cost", 0, "cost of a build in runs (or minutes with --unit time); 0: measured")
	f.IntVar(&bf.parallel, "parallel", 1, "tests in flight at once, on different commits (multisection)")
	f.StringVar(&bf.job, "job", "", "job directory (default under the kbisect cache)")
	f.BoolVar(&bf.asJSON, "json", false, "print the result as one JSON object")
	f.BoolVar(&bf.verifyRevert, "verify-revert", false, "after finding the culprit, test bad with it reverted")
	f.IntVar(&bf.maxRuns, "max-runs", 0, "stop (inconclusive) after this many runs (0: no limit)")
	f.DurationVar(&bf.maxTime, "max-time", 0, "stop (inconclusive) after this much test time (0: no limit)")
	f.IntVar(&bf.retries, "retries", 3, "infrastructure errors in a row before stopping")

	var rf struct{ asJSON bool }
	resume := &cobra.Command{
		Use:   "resume DIR",
		Short: "Continue a bisection from its job directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResume(cmd, args[0], rf.asJSON)
		},
	}
	resume.Flags().BoolVar(&rf.asJSON, "json", false, "print the result as one JSON object")

	var sf struct{ asJSON bool }
	status := &cobra.Command{
		Use:   "status DIR",
		Short: "Show a bisection's posterior, runs and time spent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd, args[0], sf.asJSON)
		},
	}
	status.Flags().BoolVar(&sf.asJSON, "json", false, "print the status as one JSON object")

	logCmd := &cobra.Command{
		Use:   "log DIR",
		Short: "Print the bisection as a log that git bisect replay accepts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := bisect.Open(args[0])
			if err != nil {
				return err
			}
			return j.WriteLog(cmd.OutOrStdout())
		},
	}

	var format, out string
	report := &cobra.Command{
		Use:   "report DIR",
		Short: "Write the Markdown, HTML and JSON reports of a bisection",
		Long: `report writes report.md, report.html (with plots of the posterior after every run
and of the runs over time), report.json, posterior.svg and timeline.svg into the
job directory (or -o DIR) and prints their paths; --format md|html|json prints
one report to standard output instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := bisect.OpenReport(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch format {
			case "":
			case "md", "markdown":
				return j.WriteMarkdown(w)
			case "html":
				return j.WriteHTML(w)
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", " ")
				return enc.Encode(j.Report())
			default:
				return fmt.Errorf("--format %q: use md, html or json", format)
			}
			dir := out
			if dir == "" {
				dir = j.Dir
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("report directory: %w", err)
			}
			paths, err := j.WriteReports(dir)
			for _, p := range paths {
				fmt.Fprintln(w, p)
			}
			return err
		},
	}
	report.Flags().StringVar(&format, "format", "", "print one report (md, html or json) to standard output")
	report.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default the job directory)")

	cmd.AddCommand(resume, status, logCmd, report)
	rootCmd.AddCommand(cmd)
}

// registerKernelFlags adds the kernel test's flags to f and returns their
// names.
func registerKernelFlags(f *pflag.FlagSet) []string {
	if addKernelTestFlags == nil {
		return nil
	}
	kt := pflag.NewFlagSet("kernel test", pflag.ContinueOnError)
	addKernelTestFlags(kt)
	var names []string
	kt.VisitAll(func(fl *pflag.Flag) { names = append(names, fl.Name) })
	f.AddFlagSet(kt)
	return names
}

// kernelArgs returns the kernel-test flags given on the command line, in a
// form that parses back.
func kernelArgs(f *pflag.FlagSet, names []string) []string {
	var out []string
	for _, n := range names {
		fl := f.Lookup(n)
		if fl == nil || !fl.Changed {
			continue
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+n+"="+v)
			}
			continue
		}
		out = append(out, "--"+n+"="+fl.Value.String())
	}
	return out
}

// parseBudget reads --budget: a number of runs, or a duration.
func parseBudget(s string) (runs int, d time.Duration, err error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return 0, 0, fmt.Errorf("--budget %s: give at least 1 run, or a duration such as 30m", s)
		}
		return n, 0, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, 0, fmt.Errorf("--budget %q: give a number of runs (200) or a test time (30m, 2h)", s)
	}
	return 0, d, nil
}

func defaultJobDir(spec bisect.Spec) string {
	h := sha256.Sum256([]byte(spec.Repo + "\x00" + spec.Good + "\x00" + spec.Bad + "\x00" + spec.Exec + "\x00" + strings.Join(spec.TestArgs, "\x00")))
	return filepath.Join(cachedir.Dir("bisect"), filepath.Base(spec.Repo)+"-"+hex.EncodeToString(h[:6]))
}

func runBisect(cmd *cobra.Command, bf *bisectFlags) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if bf.confidence <= 0 || bf.confidence >= 1 {
		return fmt.Errorf("--confidence %g: give a probability between 0 and 1, such as 0.99", bf.confidence)
	}
	if bf.parallel < 1 {
		return fmt.Errorf("--parallel %d: give at least 1", bf.parallel)
	}
	if _, err := bisect.ParseStrategy(bf.strategy); err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	budgetRuns, budget, err := parseBudget(bf.budget)
	if err != nil {
		return err
	}
	unit := bisect.Unit(bf.unit)
	switch unit {
	case "":
		unit = bisect.UnitTime
		if bf.exec != "" {
			unit = bisect.UnitRuns
		}
	case bisect.UnitRuns, bisect.UnitTime:
	default:
		return fmt.Errorf("--unit %q: use runs or time", bf.unit)
	}
	if bf.exec == "" && kernelTester == nil {
		return errors.New("kernel pipeline not available; use --exec CMD to bisect with any test command")
	}
	repo, err := gitrepo.Open(ctx, bf.repo)
	if err != nil {
		return err
	}
	good, bad, err := bisect.ResolveRange(ctx, repo, bf.good, bf.bad)
	if err != nil {
		return err
	}
	spec := bisect.Spec{
		Repo: repo.Dir, Good: good, Bad: bad, GoodRef: bf.good, BadRef: bf.bad,
		Options: bisect.Options{
			Strategy: bf.strategy, Confidence: bf.confidence, Unit: unit,
			BudgetRuns: budgetRuns, Budget: budget,
			RunTime: bf.runTime, MaxRunTime: bf.maxRunTime, Timeout: bf.timeout,
			BuildCost: bf.buildCost, Parallel: bf.parallel, Retries: bf.retries,
			MaxRuns: bf.maxRuns, MaxTime: bf.maxTime, VerifyRevert: bf.verifyRevert,
		},
	}
	if wd, err := os.Getwd(); err == nil {
		spec.Cwd = wd
	}
	if bf.exec != "" {
		if spec.Exec, err = exectest.CheckCommand(bf.exec, repo.Dir); err != nil {
			return err
		}
	} else {
		spec.TestArgs = kernelArgs(cmd.Flags(), bf.ktNames)
	}
	hist, err := bisect.LoadHistory(ctx, repo, good, bad)
	if err != nil {
		return err
	}
	dir := bf.job
	if dir == "" {
		dir = defaultJobDir(spec)
	}
	var tester bisect.Tester
	if spec.Exec == "" {
		// Build the kernel tester first: bad test flags fail before the
		// job directory is made.
		if tester, err = kernelTester(cmd, repo); err != nil {
			return err
		}
	}
	job, err := bisect.Create(dir, spec, hist)
	if err != nil {
		return err
	}
	defer job.Close()
	if spec.Exec != "" {
		tester = newExecTester(repo, spec, job.Dir)
	}
	if c, ok := tester.(io.Closer); ok {
		defer c.Close()
	}
	return runJob(cmd, job, tester, bf.asJSON, true)
}

func runResume(cmd *cobra.Command, dir string, asJSON bool) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	probe, err := bisect.Open(dir)
	if err != nil {
		return err
	}
	spec := probe.Spec
	if spec.Cwd != "" {
		// Relative paths in the stored flags are relative to it.
		if err := os.Chdir(spec.Cwd); err != nil {
			fmt.Fprintf(os.Stderr, "kbisect: cannot go back to %s (%v): relative paths in the test flags may not resolve\n", spec.Cwd, err)
		}
	}
	repo, err := gitrepo.Open(ctx, spec.Repo)
	if err != nil {
		return fmt.Errorf("resume %s: %w", dir, err)
	}
	hist, err := bisect.LoadHistory(ctx, repo, spec.Good, spec.Bad)
	if err != nil {
		return fmt.Errorf("resume %s: %w", dir, err)
	}
	var tester bisect.Tester
	if spec.Exec == "" {
		if kernelTester == nil {
			return errors.New("kernel pipeline not available in this kbisect: this job needs it")
		}
		registerKernelFlags(cmd.Flags())
		if err := cmd.Flags().Parse(spec.TestArgs); err != nil {
			return fmt.Errorf("resume %s: stored test flags: %w", dir, err)
		}
		if tester, err = kernelTester(cmd, repo); err != nil {
			return err
		}
	}
	job, err := bisect.Resume(dir, hist)
	if err != nil {
		return err
	}
	defer job.Close()
	if spec.Exec != "" {
		tester = newExecTester(repo, spec, job.Dir)
	}
	if c, ok := tester.(io.Closer); ok {
		defer c.Close()
	}
	return runJob(cmd, job, tester, asJSON, false)
}

// newExecTester is the --exec test of spec. In time mode the command
// gets the run length in KBISECT_BUDGET and --timeout is the grace after
// it; in runs mode --timeout is the time limit of a run.
func newExecTester(repo *gitrepo.Repo, spec bisect.Spec, dir string) bisect.Tester {
	t := exectest.New(repo, spec.Exec, dir, spec.Options.Parallel)
	if spec.Options.Unit == bisect.UnitTime {
		t.TimeMode, t.Grace = true, spec.Options.Timeout
	}
	return t
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func runJob(cmd *cobra.Command, job *bisect.Job, tester bisect.Tester, asJSON, fresh bool) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	tty := !asJSON && isTerminal(os.Stderr)
	var progress func(bisect.Progress)
	if tty {
		n := len(job.Commits()) - 1
		verb := "resuming"
		if fresh {
			verb = "bisecting"
		}
		fmt.Fprintf(os.Stderr, "kbisect: %s %d commits, good %s .. bad %s; job %s\n", verb, n,
			bisect.DescribeCommit(job.Commits()[0]), bisect.DescribeCommit(job.Commits()[n]), job.Dir)
		progress = func(p bisect.Progress) {
			switch {
			case p.Finished != nil:
			case p.Err != nil:
				fmt.Fprintf(os.Stderr, "[%d] %s %s: error (retried): %v\n", p.Seq, p.Phase, p.Commit.Short(), p.Err)
			default:
				fmt.Fprintf(os.Stderr, "[%d] %-8s %s %-4s %6.1fs | best %s %5.1f%% | %d runs, %d builds\n",
					p.Seq, p.Phase, p.Commit.Short(), p.Verdict, p.Elapsed.Seconds(), p.Best.Short(), 100*p.BestP, p.Runs, p.Builds)
			}
		}
	}
	res, err := job.Run(ctx, tester, progress)
	if err != nil {
		if errors.Is(err, bisect.ErrInterrupted) {
			return &exitError{exitInterrupted, err}
		}
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(b))
	} else {
		printResult(out, job, res)
	}
	switch res.Status {
	case bisect.StatusFound:
		return nil
	case bisect.StatusNoRegression:
		return &exitError{code: exitNoRegression}
	case bisect.StatusInconclusive:
		return &exitError{code: exitInconclusive}
	default:
		return &exitError{code: exitInfra}
	}
}

func commitByHash(job *bisect.Job, h string) bisect.Commit {
	for _, c := range job.Commits() {
		if c.Hash == h {
			return c
		}
	}
	return bisect.Commit{Hash: h}
}

func printResult(w io.Writer, job *bisect.Job, r *bisect.Result) {
	test := (time.Duration(r.TestSeconds) * time.Second).String()
	switch r.Status {
	case bisect.StatusFound:
		c := commitByHash(job, r.Culprit)
		fmt.Fprintf(w, "first bad commit: %s %s\n", c.Hash, c.Subject)
		fmt.Fprintf(w, "confidence %.4g after %d runs (%d builds, %s of test); detection rate %.3g %s\n", r.Confidence, r.Runs, r.Builds, test, r.Rate, r.RateUnit)
		if len(r.Flags) > 0 {
			fmt.Fprintf(w, "warning: %s\n", flagText(r.Flags))
		}
		if r.Revert != nil {
			fmt.Fprintf(w, "revert check: %s: %s\n", r.Revert.Verdict, r.Revert.Reason)
		}
	case bisect.StatusNoRegression:
		fmt.Fprintf(w, "no regression in the range: %s\n", r.Reason)
	case bisect.StatusInconclusive:
		fmt.Fprintf(w, "inconclusive: %s\n", r.Reason)
		if len(r.Candidates) > 0 {
			fmt.Fprintf(w, "candidates (probability %.4g together):\n", r.Confidence)
			for _, h := range r.Candidates {
				c := commitByHash(job, h)
				fmt.Fprintf(w, "  %s %s\n", c.Hash, c.Subject)
			}
		}
	default:
		fmt.Fprintf(w, "stopped: %s\n", r.Reason)
	}
	fmt.Fprintf(w, "job: %s (kbisect bisect report %s)\n", r.Job, r.Job)
}

func flagText(flags []string) string {
	var out []string
	for _, f := range flags {
		switch {
		case f == "merge":
			out = append(out, "the culprit is a merge: the bug comes from combining its parents")
		case strings.HasPrefix(f, "tag:"):
			out = append(out, "the culprit is the tagged release "+strings.TrimPrefix(f, "tag:"))
		case f == "same-binary-as-parent":
			out = append(out, "the culprit builds to the same binary as its parent: the difference in verdicts cannot come from it; suspect noise or the environment")
		default:
			out = append(out, f)
		}
	}
	return strings.Join(out, "; ")
}

func runStatus(cmd *cobra.Command, dir string, asJSON bool) error {
	j, err := bisect.Open(dir)
	if err != nil {
		return err
	}
	r := j.Status()
	w := cmd.OutOrStdout()
	if asJSON {
		b, err := json.Marshal(struct {
			*bisect.Result
			Top []bisect.TopCommit `json:"top"`
		}{r, j.Top(5)})
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
		return nil
	}
	n := len(j.Commits()) - 1
	fmt.Fprintf(w, "job:      %s\n", j.Dir)
	fmt.Fprintf(w, "repo:     %s\n", j.Spec.Repo)
	fmt.Fprintf(w, "range:    good %s .. bad %s (%d commits)\n", bisect.DescribeCommit(j.Commits()[0]), bisect.DescribeCommit(j.Commits()[n]), n)
	if j.Spec.Exec != "" {
		fmt.Fprintf(w, "test:     --exec %s\n", j.Spec.Exec)
	} else {
		fmt.Fprintf(w, "test:     kernel pipeline %s\n", strings.Join(j.Spec.TestArgs, " "))
	}
	fmt.Fprintf(w, "status:   %s", r.Status)
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", r.Reason)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "runs:     %d (%d builds, %d skipped, %d infrastructure errors, %d lost)\n", r.Runs, r.Builds, r.Skips, r.InfraErrors, r.LostRuns)
	fmt.Fprintf(w, "time:     %s of test, %s of builds\n", time.Duration(r.TestSeconds*float64(time.Second)).Round(time.Second), time.Duration(r.BuildSecs*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(w, "rate:     %.3g %s (estimated)\n", r.Rate, r.RateUnit)
	fmt.Fprintln(w, "posterior (first bad commit):")
	for _, t := range j.Top(5) {
		fmt.Fprintf(w, "  %6.2f%%  %s\n", 100*t.P, bisect.DescribeCommit(t.Commit))
	}
	recs := j.Records()
	var last []bisect.Record
	for _, rec := range recs {
		if rec.Type == bisect.RecRun || rec.Type == bisect.RecInfra || rec.Type == bisect.RecRevert {
			last = append(last, rec)
		}
	}
	if len(last) > 5 {
		last = last[len(last)-5:]
	}
	if len(last) > 0 {
		fmt.Fprintln(w, "last runs:")
	}
	for _, rec := range last {
		v := string(rec.Verdict)
		if rec.Type == bisect.RecInfra {
			v = "error: " + rec.Error
		}
		fmt.Fprintf(w, "  #%d %s %.12s %s (%.1fs)\n", rec.Seq, rec.Time.Local().Format("15:04:05"), rec.Commit, v, rec.Elapsed)
	}
	return nil
}
