// Package validate answers the questions that follow a bisection: does
// this patch fix the bug, and does this series break anything? It applies
// a patch series on a base commit in a clone kbisect owns (the user's
// repository is only read), builds the base and the patched trees, runs
// the test on both as often as the statistics need, and concludes per
// patch: fixes, does not fix, no regression, regression, or inconclusive
// with the test time still needed. A failure is proof of a bug; a pass is
// weighed against the base's failure rate (see Evidence, PFixed).
package validate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/bisectrun"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/testcases"
)

// Expect is the question a validation answers.
type Expect string

const (
	// ExpectFix asks whether the patched kernel no longer has the base's
	// bug.
	ExpectFix Expect = "fix"
	// ExpectNoRegression asks whether the patched kernel fails no more
	// often than the base.
	ExpectNoRegression Expect = "no-regression"
)

// Conclusions of a patch (Row.Conclusion).
const (
	Fixes        = "fixes"
	DoesNotFix   = "does not fix"
	NoRegression = "no regression"
	Regression   = "regression"
	Inconclusive = "inconclusive"
	DoesNotApply = "does not apply"
	DoesNotBuild = "does not build"
	DoesNotBoot  = "does not boot"
	// Untestable is an --exec command that said skip (exit 125).
	Untestable = "untestable"
)

// Defaults.
const (
	DefaultConfidence = 0.99
	DefaultBudget     = 30 * time.Minute
	// DefaultPriorFix is the prior probability that a patch fixes the bug.
	DefaultPriorFix = 0.5
	// maxInfraErrors in a row on one kernel abort the validation.
	maxInfraErrors = 3
)

// Options say what to validate and how.
type Options struct {
	// Repo is the user's repository (only read).
	Repo string
	// Base is the commit the series applies to.
	Base string
	// Patches is a directory of patch files, an mbox, or a REV..REV range
	// of Repo.
	Patches string
	// Each tests every patch of the series (each prefix), not just the
	// tip.
	Each bool
	// Expect is the question (default ExpectFix).
	Expect Expect
	// Confidence a conclusion needs (default 0.99).
	Confidence float64
	// Budget bounds the time spent in test runs (not builds); default
	// 30 minutes.
	Budget time.Duration
	// Tolerance is the largest increase of the failure rate that still
	// counts as no regression: failures per hour, or for Exec the
	// probability that a run fails; 0 takes the smallest rate each patch's
	// share of the budget can rule out.
	Tolerance float64
	// PriorFix is the prior probability of a fix (default 0.5).
	PriorFix float64

	// Kernel is the kernel test, the commit pipeline (build, boot a guest
	// pair here or in a LAVA lab, judge); nil with Exec. Its Build.Repo is
	// kbisect's clone, and its runs stop at their first failure.
	Kernel *testcases.CommitTest
	// Exec is a shell command run in kbisect's checkout of each tree
	// instead: exit 0 good, 125 skip, 1-127 bad, >= 128 an infrastructure
	// failure (as git bisect run).
	Exec string

	// CacheDir is the root of kbisect's caches (default: cachedir).
	CacheDir string
	// Log receives progress lines.
	Log io.Writer
}

// Report is the outcome of a validation.
type Report struct {
	Repo        string  `json:"repo"`
	Base        string  `json:"base"`
	BaseSubject string  `json:"base_subject"`
	Workspace   string  `json:"workspace"`
	Test        string  `json:"test"`
	Expect      Expect  `json:"expect"`
	Confidence  float64 `json:"confidence"`
	PriorFix    float64 `json:"prior_fix"`
	// RunSeconds is the duration of one kernel test run (0 for --exec).
	RunSeconds float64 `json:"run_seconds,omitempty"`
	// Unit is the unit of exposure: "minute" (of test traffic: the bytes a
	// run checked, as minutes at testcases.ExposureMbit) or "run"
	// (--exec).
	Unit string `json:"unit"`
	// RateUnit is the unit of failure rates: "per hour", or for --exec
	// "per run" (the probability that a run fails).
	RateUnit      string  `json:"rate_unit"`
	BudgetSeconds float64 `json:"budget_seconds"`
	// SpentSeconds is the time spent in test runs (boot included).
	SpentSeconds float64 `json:"spent_seconds"`
	BaseResult   *Row    `json:"base_result"`
	Patches      []*Row  `json:"patches"`
	// Conclusion is that of the series' tip (the last tested row).
	Conclusion string `json:"conclusion"`
}

// Row is the result of one patch (or of the base).
type Row struct {
	// Index is the patch's position, from 1; 0 for the base.
	Index   int      `json:"index"`
	Name    string   `json:"name"`
	Subject string   `json:"subject"`
	Files   []string `json:"files,omitempty"`
	// Commit is the commit made from the patch in kbisect's clone (the
	// tree with this patch and those before it).
	Commit string `json:"commit,omitempty"`
	// Applies is "yes", "no", or "" when not tried (an earlier patch
	// failed).
	Applies    string `json:"applies"`
	ApplyError string `json:"apply_error,omitempty"`
	// Tested is set for the trees that were built and run.
	Tested bool       `json:"tested"`
	Build  *BuildInfo `json:"build,omitempty"`
	// Boots is "yes" or "no" for a kernel that was run.
	Boots string `json:"boots,omitempty"`
	Evidence
	// Verdict is "fail" when a run failed, "pass" when runs passed.
	Verdict string `json:"verdict,omitempty"`
	// Rate is the observed failure rate (in the report's RateUnit);
	// RateLow and RateHigh its 95% interval.
	Rate     float64 `json:"rate"`
	RateLow  float64 `json:"rate_low"`
	RateHigh float64 `json:"rate_high"`
	// Probability is the posterior probability of the conclusion (of a fix
	// for fixes, of no fix for does not fix: 1 after a failure, ...).
	Probability float64 `json:"probability,omitempty"`
	Conclusion  string  `json:"conclusion,omitempty"`
	// Detail explains the conclusion (the error, what is missing).
	Detail string `json:"detail,omitempty"`
	// Need is the further exposure (in the report's Unit) an inconclusive
	// answer needs, the base's and the patched tree's together.
	Need float64 `json:"need,omitempty"`
	// Tolerance is the failure rate (in RateUnit) that the series may add
	// and still be no regression.
	Tolerance float64 `json:"tolerance,omitempty"`
	// SpentSeconds is the time this row's runs took (boot included).
	SpentSeconds float64 `json:"spent_seconds"`
}

// BuildInfo is how a tree built.
type BuildInfo struct {
	OK bool `json:"ok"`
	// Error is the first compiler error of a failed build.
	Error    string  `json:"error,omitempty"`
	Log      string  `json:"log,omitempty"`
	CacheHit bool    `json:"cache_hit"`
	Seconds  float64 `json:"seconds"`
	// Warnings are compiler warnings in the files the patches touch that
	// the base's build does not have.
	Warnings []Warning `json:"new_warnings,omitempty"`
	// Uncompared are touched files the base's build log does not show
	// compiled (a cached incremental build): their warnings are listed
	// without comparison.
	Uncompared []string `json:"uncompared,omitempty"`
}

// Validate applies the series, builds, tests, and reports. Bad input and
// infrastructure failures are errors; a patch that does not apply, build
// or boot is a conclusion in the report.
func Validate(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	user, err := gitrepo.Open(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	base, err := user.Resolve(ctx, o.Base)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	subject, _ := user.Subject(ctx, base)
	tmp, err := os.MkdirTemp("", "kbisect-validate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	series, err := ReadSeries(ctx, user, o.Patches, tmp)
	if err != nil {
		return nil, err
	}
	clone, err := OpenClone(ctx, user, o.CacheDir, o.Log)
	if err != nil {
		return nil, err
	}
	defer clone.Close()

	rep := &Report{
		Repo: user.Dir, Base: base, BaseSubject: subject, Workspace: clone.Dir, Expect: o.Expect,
		Confidence: o.Confidence, PriorFix: o.PriorFix, BudgetSeconds: o.Budget.Seconds(),
		BaseResult: &Row{Name: "base " + gitrepo.Short(base), Subject: subject, Commit: base},
	}
	commits, applyErr := clone.Apply(ctx, base, series, tmp)
	var ae *ApplyError
	if applyErr != nil && !errors.As(applyErr, &ae) {
		return nil, applyErr
	}
	for i, p := range series {
		r := &Row{Index: i + 1, Name: p.Name, Subject: p.Subject, Files: p.Files}
		switch {
		case i < len(commits):
			r.Applies, r.Commit = "yes", commits[i]
		case ae != nil && i == ae.Index:
			r.Applies, r.Conclusion = "no", DoesNotApply
			r.ApplyError = ae.Detail
			if ae.File != "" {
				r.ApplyError = ae.File + ": " + ae.Detail
			}
			r.Detail = ae.Error()
			o.logf("%v", ae)
		}
		rep.Patches = append(rep.Patches, r)
	}

	// What to test: the tip of a series that applies, or with --each every
	// patch that applied.
	var targets []*Row
	switch {
	case o.Each:
		for _, r := range rep.Patches {
			if r.Applies == "yes" {
				targets = append(targets, r)
			}
		}
	case ae == nil:
		targets = []*Row{rep.Patches[len(rep.Patches)-1]}
	}
	// The files a target's patches touch (the tip: the whole series).
	files := map[*Row][]string{}
	for i, r := range rep.Patches {
		var fs []string
		if o.Each {
			fs = series[i].Files
		} else {
			for _, p := range series {
				fs = append(fs, p.Files...)
			}
		}
		files[r] = fs
	}
	var t tester
	if o.Kernel != nil {
		t = newKernelTester(o.Kernel, clone.Dir, o.CacheDir, o.logf)
		rep.Test = o.Kernel.Run.Test
		rep.RunSeconds = o.Kernel.Run.Duration.Seconds()
		rep.Unit, rep.RateUnit = "minute", "per hour"
	} else {
		t = &execTester{cmd: o.Exec, clone: clone, limit: o.Budget, runRoot: filepath.Join(o.CacheDir, "runs", "validate-"+time.Now().Format("20060102-150405"))}
		rep.Test = "exec: " + o.Exec
		rep.Unit, rep.RateUnit = "run", "per run"
	}
	if len(targets) == 0 {
		rep.conclude()
		return rep, nil
	}

	// Builds first: a tree that does not build costs no test time.
	rep.BaseResult.Tested = true
	if err := t.prepare(ctx, rep.BaseResult, nil, nil); err != nil {
		return nil, err
	}
	if c := rep.BaseResult.Conclusion; c != "" {
		return nil, fmt.Errorf("the base %s %s: %s: validate needs a base that works", gitrepo.Short(base), c, rep.BaseResult.Detail)
	}
	var testable []*Row
	for _, r := range targets {
		r.Tested = true
		if err := t.prepare(ctx, r, rep.BaseResult, files[r]); err != nil {
			return nil, err
		}
		if r.Conclusion == "" {
			testable = append(testable, r)
		}
	}

	if len(testable) == 0 {
		rep.conclude()
		return rep, nil
	}
	e := &engine{o: o, t: t, rep: rep, base: &arm{row: rep.BaseResult}, trials: o.Kernel == nil}
	for _, r := range testable {
		e.targets = append(e.targets, &arm{row: r})
	}
	if err := e.run(ctx); err != nil {
		return nil, err
	}
	rep.conclude()
	return rep, nil
}

// check validates the options and fills in defaults.
func (o *Options) check() error {
	if o.Repo == "" {
		o.Repo = "."
	}
	if o.Base == "" {
		return errors.New("no base: give --base REV, the commit the patches apply to")
	}
	if o.Patches == "" {
		return errors.New("no patches: give --patches a directory of .patch files, an mbox, or a REV..REV range")
	}
	switch o.Expect {
	case "":
		o.Expect = ExpectFix
	case ExpectFix, ExpectNoRegression:
	default:
		return fmt.Errorf("--expect %q: use fix or no-regression", o.Expect)
	}
	if o.Confidence == 0 {
		o.Confidence = DefaultConfidence
	}
	if !(o.Confidence > 0.5 && o.Confidence < 1) {
		return fmt.Errorf("--confidence %g: give a probability between 0.5 and 1, such as 0.99", o.Confidence)
	}
	if o.Budget == 0 {
		o.Budget = DefaultBudget
	}
	if o.Budget < 0 {
		return fmt.Errorf("--budget %v: give a positive duration such as 30m", o.Budget)
	}
	if !(o.Tolerance >= 0) || math.IsInf(o.Tolerance, 1) || o.Exec != "" && o.Tolerance >= 1 {
		return fmt.Errorf("--tolerance %g: give a failure rate per hour >= 0 (with --exec, a failure probability per run below 1)", o.Tolerance)
	}
	if o.PriorFix == 0 {
		o.PriorFix = DefaultPriorFix
	}
	if !(o.PriorFix > 0 && o.PriorFix < 1) {
		return fmt.Errorf("prior probability of a fix %g: use a value between 0 and 1", o.PriorFix)
	}
	if o.CacheDir == "" {
		o.CacheDir = cachedir.Dir("")
	}
	switch {
	case o.Exec != "" && o.Kernel != nil:
		return errors.New("give either --exec or a kernel test, not both")
	case o.Exec != "":
		var err error
		o.Exec, err = bisectrun.Check(o.Exec, o.Repo)
		return err
	case o.Kernel == nil:
		return errors.New("no test: give --test (a kernel test) or --exec CMD")
	}
	if err := o.Kernel.Run.ValidateTest(); err != nil {
		return err
	}
	if o.Kernel.Build.Config == "" {
		return errors.New("no kernel config: give --config (your .config, or tinyconfig/defconfig)")
	}
	return nil
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "validate: "+format+"\n", args...)
	}
}

// Outcome sums a validation up.
type Outcome string

// Outcomes of a validation.
const (
	// AsExpected: every tested tree answered the question as expected.
	AsExpected Outcome = "as expected"
	// Contrary: a tree did not (does not fix, regression, does not apply,
	// build or boot).
	Contrary Outcome = "contrary"
	// Undecided: no tree answered against the expectation, but one needs
	// more test time.
	Undecided Outcome = "undecided"
)

// Outcome sums the report's conclusions up.
func (r *Report) Outcome() Outcome {
	out := AsExpected
	for _, p := range r.Patches {
		switch p.Conclusion {
		case Fixes, NoRegression, "":
		case Inconclusive:
			out = Undecided
		default:
			return Contrary
		}
	}
	return out
}

// conclude fills in the report's conclusion: the last tested row's, else
// the first failed row's.
func (r *Report) conclude() {
	for i := len(r.Patches) - 1; i >= 0; i-- {
		if p := r.Patches[i]; p.Tested && p.Conclusion != "" {
			r.Conclusion = p.Conclusion
			return
		}
	}
	for _, p := range r.Patches {
		if p.Conclusion != "" {
			r.Conclusion = p.Conclusion
			return
		}
	}
}

// fillRate sets the row's rate and interval from its evidence, converted
// by units.
func (r *Row) fillRate(units func(float64) float64) {
	rate, lo, hi := r.Evidence.Rate(0.95)
	if math.IsInf(hi, 1) {
		hi = 0
	}
	r.Rate, r.RateLow, r.RateHigh = units(rate), units(lo), units(hi)
	switch {
	case r.Failures > 0:
		r.Verdict = "fail"
	case r.Runs > 0:
		r.Verdict = "pass"
	}
}
