package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/bisect/exectest"
	"github.com/kbisect/kbisect/bisect/kernel"
	"github.com/kbisect/kbisect/internal/bisectrun"
	"github.com/kbisect/kbisect/internal/cliflags"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/statusline"
)

// Exit statuses of `kbisect bisect` beyond 0 (culprit found).
var bisectExits = map[string]int{
	bisect.StatusFound:        0,
	bisect.StatusNoRegression: 3,
	bisect.StatusInconclusive: 4,
	bisect.StatusError:        5,
}

const exitInterrupted = 130

// bisectFlags are the flags of `kbisect bisect`: the search's options are
// set in place.
type bisectFlags struct {
	repo, good, bad, exec string
	budget, unit, job     string
	find                  string
	opts                  bisect.Options
	asJSON                bool
	kernel                kernelFlags
	// kernelNames are the names of the kernel test's flags, stored in the
	// job directory as given and given back on resume.
	kernelNames []string
}

func newBisectCmd() *cobra.Command {
	var bf bisectFlags
	cmd := &cobra.Command{
		Use:   "bisect --repo R --good G --bad B [--exec CMD] [flags]",
		Short: "Find the commit that introduced a sporadic bug",
		Long:  help("bisect"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBisect(cmd, &bf)
		},
	}
	f, o := cmd.Flags(), &bf.opts
	f.StringVar(&bf.repo, "repo", ".", "git repository to bisect (never modified)")
	f.StringVar(&bf.good, "good", "", "a commit without the bug")
	f.StringVar(&bf.bad, "bad", "", "a commit with the bug")
	f.StringVar(&bf.find, "find", bisect.FindRegression, "what to look for: regression (the first commit with the bug; good is older) or fix (the first commit without it; bad is older)")
	f.StringVar(&bf.exec, "exec", "", "command that tests the checked-out tree (exit codes as git bisect run)")
	f.StringVar(&o.Strategy, "strategy", "bayes", "bayes, or classic[:K] (git bisect, K passes make a commit good)")
	f.Float64Var(&o.Confidence, "confidence", 0.99, "stop when one commit is the first bad one with this probability")
	f.StringVar(&bf.budget, "budget", "30m", "bad must fail within this: a number of runs (200) or test time (30m; with --unit runs, at most 1000 runs)")
	f.StringVar(&bf.unit, "unit", "", "runs (each run a trial; default with --exec) or time (failures per minute of a test that stops at its first failure; default for kernels)")
	f.DurationVar(&o.RunTime, "run-time", time.Minute, "time unit: the shortest run the search asks for")
	f.DurationVar(&o.MaxRunTime, "max-run-time", 0, "time unit: the longest run (default 16x --run-time)")
	f.DurationVar(&o.Timeout, "timeout", 0, "runs unit: time limit of one run, then an infrastructure error (default: 10x the longest pass, at least 1m; before any pass the --budget time, or 1h; for kernels the run's length, default --run-time); time unit with --exec: how long past its run length a command may take (default half of it, at least 30s)")
	f.Float64Var(&o.BuildCost, "build-cost", 0, "cost of a build in runs (or minutes with --unit time); 0: measured")
	f.IntVar(&o.Parallel, "parallel", 1, "tests in flight at once, on different commits (multisection)")
	f.StringVar(&bf.job, "job", "", "job directory (default under the kbisect cache)")
	f.BoolVar(&bf.asJSON, "json", false, "print the result as one JSON object")
	f.BoolVar(&o.VerifyRevert, "verify-revert", false, "after finding the culprit, test bad with it reverted")
	f.StringVar(&o.Signature, "signature", "", "bisect the failures whose signature this regular expression matches (default: the signature of bad's first failure)")
	f.IntVar(&o.MaxRuns, "max-runs", 0, "stop (inconclusive) after this many runs (0: no limit)")
	f.DurationVar(&o.MaxTime, "max-time", 0, "stop (inconclusive) after this much test time (0: no limit)")
	f.IntVar(&o.Retries, "retries", 3, "infrastructure errors in a row before stopping")
	kt := kernelTestFlags(&bf.kernel)
	kt.VisitAll(func(fl *pflag.Flag) { bf.kernelNames = append(bf.kernelNames, fl.Name) })
	f.AddFlagSet(kt)

	var resumeJSON, statusJSON bool
	var resumeToken string
	resume := &cobra.Command{
		Use:   "resume DIR",
		Short: "Continue a bisection from its job directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResume(cmd, args[0], resumeJSON, resumeToken)
		},
	}
	resume.Flags().BoolVar(&resumeJSON, "json", false, "print the result as one JSON object")
	resume.Flags().StringVar(&resumeToken, "lava-token", "", "LAVA API token of a bisection under LAVA (default $KBISECT_LAVA_TOKEN): a job directory never holds it")
	cliflags.MarkSecret(resume.Flags(), "lava-token")
	status := &cobra.Command{
		Use:   "status DIR",
		Short: "Show a bisection's posterior, runs and time spent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := bisect.Open(args[0])
			if err != nil {
				return err
			}
			if statusJSON {
				return j.WriteStatusJSON(cmd.OutOrStdout())
			}
			j.WriteStatus(cmd.OutOrStdout())
			return nil
		},
	}
	status.Flags().BoolVar(&statusJSON, "json", false, "print the status as one JSON object")
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
		Long:  help("bisect-report"),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := bisect.OpenReport(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format != "" {
				return j.WriteReport(w, format)
			}
			if out == "" {
				out = j.Dir
			}
			paths, err := j.WriteReports(out)
			for _, p := range paths {
				fmt.Fprintln(w, p)
			}
			return err
		},
	}
	report.Flags().StringVar(&format, "format", "", "print one report (md, html or json) to standard output")
	report.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default the job directory)")

	cmd.AddCommand(resume, status, logCmd, report)
	return cmd
}

// kernelTestFlags are the flags of a bisection's kernel test, set into k:
// given to kbisect bisect, and parsed again from the job directory on
// resume.
func kernelTestFlags(k *kernelFlags) *pflag.FlagSet {
	kt := pflag.NewFlagSet("kernel test", pflag.ContinueOnError)
	k.register(kt)
	// The search chooses each run's length (--run-time, --max-run-time).
	kt.MarkHidden("duration")
	return kt
}

func runBisect(cmd *cobra.Command, bf *bisectFlags) error {
	ctx, o := cmd.Context(), bf.opts
	// Every flag is checked before anything is made: bad input leaves no
	// job directory.
	isExec := cmd.Flags().Changed("exec")
	if isExec && strings.TrimSpace(bf.exec) == "" {
		return errors.New("--exec is empty: give the command that tests the checked-out tree (without --exec, the test is the kernel pipeline)")
	}
	// bisect.Options checks the flags (o.Validate below); 0 is its
	// "default", which a user who types 0 does not mean.
	if o.Confidence == 0 {
		return errors.New("--confidence 0: give a probability between 0.5 and 1, such as 0.99")
	}
	if o.Parallel == 0 {
		return errors.New("--parallel 0: give 1 to 64")
	}
	var err error
	if o.BudgetRuns, o.Budget, err = bisect.ParseBudget(bf.budget); err != nil {
		return fmt.Errorf("--%w", err)
	}
	// Kernel runs stop at their first failure: their unit is time. (An
	// unknown unit is refused by Validate.)
	if o.Unit = bisect.Unit(bf.unit); o.Unit == "" && !isExec {
		o.Unit = bisect.UnitTime
	}
	if err := o.Validate(); err != nil {
		return err
	}
	repo, err := gitrepo.Open(ctx, bf.repo)
	if err != nil {
		return err
	}
	good, bad, err := bisect.ResolveRange(ctx, repo, bf.good, bf.bad, bf.find)
	if err != nil {
		return err
	}
	spec := bisect.JobSpec{Repo: repo.Dir, Good: good, Bad: bad, GoodRef: bf.good, BadRef: bf.bad, Options: o}
	if bf.find == bisect.FindFix {
		spec.Find = bisect.FindFix
	}
	spec.Cwd, _ = os.Getwd()
	if isExec {
		if spec.Exec, err = bisectrun.Check(bf.exec, repo.Dir); err != nil {
			return fmt.Errorf("--exec %w", err)
		}
	} else {
		spec.TestArgs = cliflags.Args(cmd.Flags(), bf.kernelNames)
	}
	hist, err := bisect.LoadJobHistory(ctx, repo, spec)
	if err != nil {
		return err
	}
	dir := bf.job
	if dir == "" {
		dir = spec.DefaultDir()
	}
	// The tester first: bad test flags fail before the job directory is
	// made.
	tester, release, err := newTester(ctx, spec, repo, dir, &bf.kernel)
	if err != nil {
		return err
	}
	defer release()
	job, err := bisect.Create(dir, spec, hist)
	if err != nil {
		return jobAdvice(err)
	}
	defer job.Close()
	return runJob(cmd, job, tester, bf.asJSON, true)
}

func runResume(cmd *cobra.Command, dir string, asJSON bool, lavaToken string) error {
	job, err := bisect.ResumeDir(cmd.Context(), dir)
	if err != nil {
		return jobAdvice(err)
	}
	defer job.Close()
	spec := job.Spec
	if spec.Cwd != "" {
		// Relative paths in the stored flags are relative to it.
		if err := os.Chdir(spec.Cwd); err != nil {
			fmt.Fprintf(os.Stderr, "kbisect: cannot go back to %s (%v): relative paths in the test flags may not resolve\n", spec.Cwd, err)
		}
	}
	var k kernelFlags
	if err := kernelTestFlags(&k).Parse(spec.TestArgs); err != nil {
		return fmt.Errorf("resume %s: stored test flags: %w", dir, err)
	}
	if lavaToken != "" {
		k.run.exec.lava.Token = lavaToken
	}
	tester, release, err := newTester(cmd.Context(), spec, job.Repo(), dir, &k)
	if err != nil {
		return err
	}
	defer release()
	return runJob(cmd, job, tester, asJSON, false)
}

// jobAdvice adds what to do to an error about a job directory.
func jobAdvice(err error) error {
	var je *bisect.JobExistsError
	switch {
	case errors.As(err, &je) && je.Same:
		return fmt.Errorf("%w: continue it with `kbisect bisect resume %s`, or give another --job", err, je.Dir)
	case je != nil:
		return fmt.Errorf("%w: give another --job, or `kbisect bisect resume %s`", err, je.Dir)
	case errors.Is(err, bisect.ErrLocked):
		return fmt.Errorf("%w: wait for it to finish, or give another --job", err)
	case errors.Is(err, bisect.ErrStorage):
		// A full disk is the host's fault, not the input's.
		return &exitError{bisectExits[bisect.StatusError], fmt.Errorf("%w: free some space, then run the command again", err)}
	}
	return err
}

// newTester makes the test of the bisection spec in job directory dir:
// the --exec command, or the kernel pipeline of the kernel test's flags
// (runs stop at their first failure): one constructor for start and
// resume.
func newTester(ctx context.Context, spec bisect.JobSpec, repo *gitrepo.Repo, dir string, k *kernelFlags) (bisect.Tester, func(), error) {
	if spec.Exec != "" {
		return exectest.ForJob(repo, spec, dir), func() {}, nil
	}
	// The executor lives as long as the bisection.
	ct, release, err := k.pipeline(context.WithoutCancel(ctx), repo.Dir, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	ct.Run.StopOnFail = true
	return &kernel.Tester{Pipeline: ct}, release, nil
}

func runJob(cmd *cobra.Command, job *bisect.Job, tester bisect.Tester, asJSON, fresh bool) error {
	// One line per run on stderr, whatever stdout is: a bisection may run
	// for hours in a log or under nohup, and --json keeps stdout for the
	// result alone; on a terminal, a live line below them.
	n := len(job.Commits()) - 1
	verb := "resuming"
	if fresh {
		verb = "bisecting"
	}
	fmt.Fprintf(os.Stderr, "kbisect: %s %d commits, good %s .. bad %s; job %s\n", verb, n,
		bisect.DescribeCommit(job.Commits()[0]), bisect.DescribeCommit(job.Commits()[n]), job.Dir)
	progress := bisect.NewProgressLine(statusline.Stderr())
	res, err := job.Run(cmd.Context(), tester, progress.Event)
	progress.Close()
	if errors.Is(err, bisect.ErrInterrupted) {
		return &exitError{exitInterrupted, fmt.Errorf("%w: resume with `kbisect bisect resume %s`", err, job.Dir)}
	}
	if errors.Is(err, bisect.ErrStorage) {
		return &exitError{bisectExits[bisect.StatusError], fmt.Errorf("%w: free some space, then `kbisect bisect resume %s`", err, job.Dir)}
	}
	if err != nil {
		return err
	}
	// The reports, next to the journal: what a user opens first.
	report := "kbisect bisect report " + job.Dir
	if paths, err := job.WriteReports(job.Dir); err != nil {
		fmt.Fprintf(os.Stderr, "kbisect: reports not written (%v): %s writes them\n", err, report)
	} else {
		for _, p := range paths {
			if filepath.Base(p) == "report.html" {
				report = p
			}
		}
	}
	out := cmd.OutOrStdout()
	if asJSON {
		if err := json.NewEncoder(out).Encode(res); err != nil {
			return err
		}
	} else {
		job.WriteResult(out, res)
		if res.Status == bisect.StatusError {
			fmt.Fprintf(out, "fix the cause and continue: kbisect bisect resume %s\n", res.Job)
		}
		fmt.Fprintf(out, "job: %s\nreport: %s\n", res.Job, report)
	}
	code, ok := bisectExits[res.Status]
	if !ok {
		code = bisectExits[bisect.StatusError]
	}
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}
