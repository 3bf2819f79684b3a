package validate

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// outcome is what one run showed.
type outcome int

const (
	pass outcome = iota
	fail
	// skip: the tree cannot be tested (does not boot, exit 125).
	skip
	// infra: the host failed; the run says nothing about the tree.
	infra
)

func (o outcome) String() string {
	return [...]string{"pass", "fail", "skip", "error"}[o]
}

// runResult is one run of one tree.
type runResult struct {
	outcome outcome
	// exposure the run contributes: minutes of test (to its first
	// failure), or 1 for a trial.
	exposure float64
	// wall is the run's whole time, boot included (what the budget
	// counts).
	wall   time.Duration
	reason string
}

// tester builds and runs trees: the kernel pipeline or an --exec command.
type tester interface {
	// prepare makes row's tree ready to run (builds it). A tree that
	// cannot be tested gets its conclusion in row; the error is an
	// infrastructure failure. base is nil for the base itself; files are
	// those the patches touch.
	prepare(ctx context.Context, row *Row, base *Row, files []string) error
	// run tests row's tree once.
	run(ctx context.Context, row *Row) (runResult, error)
}

// arm is a tree being tested: the base or a patched tree.
type arm struct {
	row *Row
	// wall is the time its runs took.
	wall time.Duration
	// errors counts infrastructure failures in a row.
	errors int
	// tolerance (per unit of exposure) for no regression, and the
	// comparison with the base it decides on.
	tolerance float64
	cmp       *RateComparison
}

// engine spends the budget: the base until its rate is known well enough,
// then each patched tree until its question is decided or its share of
// the budget is spent.
type engine struct {
	o       Options
	t       tester
	rep     *Report
	base    *arm
	targets []*arm
	spent   time.Duration
	// trials says runs are trials (--exec): exposure is counted in runs.
	trials bool
	// current is the target being tested.
	current *arm
	// history holds the runs that gave a verdict, in order.
	history []struct {
		arm *arm
		obs Observation
	}
}

func (e *engine) run(ctx context.Context) error {
	defer func() {
		e.rep.SpentSeconds = e.spent.Seconds()
		for _, a := range append([]*arm{e.base}, e.targets...) {
			a.row.SpentSeconds = a.wall.Seconds()
			a.row.fillRate(e.rateUnits)
		}
	}()
	if e.o.Expect == ExpectFix {
		return e.runFix(ctx)
	}
	return e.runNoRegression(ctx)
}

// once runs a's tree once and records the result.
func (e *engine) once(ctx context.Context, a *arm) (runResult, error) {
	if err := ctx.Err(); err != nil {
		return runResult{}, err
	}
	res, err := e.t.run(ctx, a.row)
	if err != nil {
		return res, err
	}
	if res.outcome != infra {
		// The budget is for test runs: a host failure (a run that timed
		// out at the whole budget, say) is not one.
		e.spent += res.wall
		a.wall += res.wall
	}
	switch res.outcome {
	case pass, fail:
		a.errors = 0
		if e.o.Kernel != nil {
			a.row.Boots = "yes"
		}
		a.row.Evidence.Add(res.outcome == fail, res.exposure)
		e.history = append(e.history, struct {
			arm *arm
			obs Observation
		}{a, Observation{Patched: a != e.base, Failed: res.outcome == fail, Exposure: res.exposure, Trial: e.trials}})
		if c := e.current; c != nil && c.cmp != nil && (a == e.base || a == c) {
			c.cmp.Add(e.history[len(e.history)-1].obs)
		}
		if !e.trials || a.row.Runs%100 == 1 || res.outcome == fail {
			e.o.logf("%s run %d: %s; %d failure(s) in %s: %s; budget %s of %s spent",
				a.row.Name, a.row.Runs, res.outcome, a.row.Failures, e.exposureText(a.row.Exposure), e.rateText(a.row.Evidence),
				e.spent.Round(time.Second), e.o.Budget)
		}
	case skip:
		e.o.logf("%s: cannot be tested: %s", a.row.Name, res.reason)
	case infra:
		a.errors++
		e.o.logf("%s: infrastructure failure %d (not counted): %s", a.row.Name, a.errors, res.reason)
		if a.errors >= maxInfraErrors {
			return res, fmt.Errorf("testing %s failed %d times in a row for reasons outside the tree (last: %s): fix the host and run again", a.row.Name, a.errors, res.reason)
		}
	}
	return res, nil
}

// baseSkip turns a base that cannot be tested into an error.
func (e *engine) baseSkip(res runResult) error {
	return fmt.Errorf("the base %s cannot be tested: %s: validate needs a base that works", gitrepo.Short(e.rep.Base), res.reason)
}

// markSkip records a patched tree that cannot be tested.
func (e *engine) markSkip(a *arm, res runResult) {
	a.row.Conclusion, a.row.Detail = Untestable, res.reason
	if e.o.Kernel != nil {
		a.row.Conclusion, a.row.Boots = DoesNotBoot, "no"
	}
}

// share returns the budget the next target may use: what is left, split
// evenly among the targets still to test.
func (e *engine) share(left int) time.Duration {
	rest := e.o.Budget - e.spent
	if rest <= 0 || left <= 0 {
		return 0
	}
	return rest / time.Duration(left)
}

// runFix answers "does the patch fix the bug": the base runs until its
// rate is known well enough for the patched runs to decide, then each
// target runs until a failure (does not fix), PFixed >= confidence
// (fixes), or its share is spent (inconclusive).
func (e *engine) runFix(ctx context.Context) error {
	c, prior := e.o.Confidence, e.o.PriorFix
	target := baseTarget(c, prior)
	b := e.base
	for {
		ev := b.row.Evidence
		if ev.Failures > 0 {
			lambda := (priorShape + float64(ev.Failures)) / ev.Exposure
			if ev.Exposure*lambda >= target {
				break
			}
		}
		if e.spent >= e.o.Budget/2 {
			break
		}
		res, err := e.once(ctx, b)
		if err != nil {
			return err
		}
		if res.outcome == skip {
			return e.baseSkip(res)
		}
	}
	if b.row.Failures == 0 {
		for _, a := range e.targets {
			a.row.Conclusion = Inconclusive
			a.row.Detail = fmt.Sprintf("the base did not fail in %s (%s): this test does not show the bug on the base; check --base, or raise --budget",
				e.exposureText(b.row.Exposure), e.rateText(b.row.Evidence))
		}
		return nil
	}
	for i, a := range e.targets {
		until := e.spent + e.share(len(e.targets)-i)
		for {
			if e.decideFix(a) {
				break
			}
			if e.spent >= until {
				sb, sp := NeedForFix(b.row.Evidence, a.row.Evidence, c, prior)
				a.row.Conclusion, a.row.Need = Inconclusive, sb+sp
				a.row.Probability = PFixed(b.row.Evidence, a.row.Evidence, prior)
				a.row.Detail = fmt.Sprintf("no failure in %s, P(fixed) = %.3f < %g: need %s (%s on the base, %s on the patched tree)",
					e.exposureText(a.row.Exposure), a.row.Probability, c, e.needText(sb+sp), e.exposureText(sb), e.exposureText(sp))
				break
			}
			res, err := e.once(ctx, a)
			if err != nil {
				return err
			}
			if res.outcome == skip {
				e.markSkip(a, res)
				break
			}
		}
		e.o.logf("%s: %s", a.row.Name, a.row.Conclusion)
	}
	return nil
}

// decideFix concludes a's fix question if the evidence allows.
func (e *engine) decideFix(a *arm) bool {
	if a.row.Failures > 0 {
		a.row.Conclusion, a.row.Probability = DoesNotFix, 1
		a.row.Detail = fmt.Sprintf("failed %d of %d runs: the bug is still there", a.row.Failures, a.row.Runs)
		return true
	}
	p := PFixed(e.base.row.Evidence, a.row.Evidence, e.o.PriorFix)
	if a.row.Runs > 0 && p >= e.o.Confidence {
		a.row.Conclusion, a.row.Probability = Fixes, p
		a.row.Detail = fmt.Sprintf("no failure in %s where the base fails at %s: P(fixed) = %.4f",
			e.exposureText(a.row.Exposure), e.rateText(e.base.row.Evidence), p)
		return true
	}
	return false
}

// runNoRegression answers "does the series make things worse": a few base
// runs (their timing sets the default tolerance), then each target runs
// until one of CompareRates' e-values reaches 1/(1-confidence); while the
// target fails, the base runs as long as it, so the two rates can be
// compared.
func (e *engine) runNoRegression(ctx context.Context) error {
	b := e.base
	for b.row.Runs == 0 || b.row.Runs < 5 && e.spent < e.o.Budget/20 {
		res, err := e.once(ctx, b)
		if err != nil {
			return err
		}
		if res.outcome == skip {
			return e.baseSkip(res)
		}
	}
	for i, a := range e.targets {
		share := e.share(len(e.targets) - i)
		until := e.spent + share
		a.tolerance = e.o.Tolerance / 60
		if e.trials {
			a.tolerance = -math.Log1p(-math.Min(e.o.Tolerance, 0.999999))
		}
		auto := a.tolerance == 0
		if auto {
			a.tolerance = e.autoTolerance(0.8 * share.Minutes() * e.exposureRate())
		}
		e.setTolerance(a, a.tolerance)
		e.current = a
		for {
			if e.decideRegression(a, false) {
				break
			}
			if e.spent >= until {
				if auto {
					// The default tolerance is what the share rules out:
					// aim it at the exposure the runs reached (how fast
					// they went, never what they said), with a margin
					// for runs of unequal length.
					e.setTolerance(a, e.autoTolerance(0.9*a.row.Exposure))
				}
				e.decideRegression(a, true)
				break
			}
			next := a
			if a.row.Failures > 0 && b.row.Exposure < a.row.Exposure {
				next = b
			}
			res, err := e.once(ctx, next)
			if err != nil {
				return err
			}
			if res.outcome == skip {
				if next == b {
					return e.baseSkip(res)
				}
				e.markSkip(a, res)
				break
			}
		}
		e.o.logf("%s: %s", a.row.Name, a.row.Conclusion)
	}
	return nil
}

// setTolerance sets a's tolerance and its comparison with the base.
func (e *engine) setTolerance(a *arm, tolerance float64) {
	a.tolerance = tolerance
	a.row.Tolerance = e.rateUnits(tolerance)
	a.cmp = &RateComparison{Tolerance: tolerance}
	for _, o := range e.observations(a) {
		a.cmp.Add(o)
	}
}

// autoTolerance is the smallest rate increase (per unit of exposure) that
// exposure of the patched tree can rule out: with exposure per run as the
// base's runs went and patched runs that all pass, the no-regression
// e-value of CompareRates just reaches the confidence.
func (e *engine) autoTolerance(exposure float64) float64 {
	b := e.base.row
	perRun := b.Exposure / float64(b.Runs)
	if e.trials {
		perRun = 1
	}
	n := int(exposure / perRun)
	if n > 20000 {
		if e.trials {
			n = 20000
		} else {
			perRun, n = exposure/20000, 20000
		}
	}
	if n < 2 {
		return ToleranceFor(exposure, 2, e.o.Confidence)
	}
	var obs []Observation
	for _, h := range e.history {
		if h.arm == e.base {
			obs = append(obs, h.obs)
		}
	}
	for i := 0; i < n; i++ {
		obs = append(obs, Observation{Patched: true, Exposure: perRun, Trial: e.trials})
	}
	threshold := 1 / (1 - e.o.Confidence)
	lo, hi := 0.0, ToleranceFor(float64(n)*perRun, n, e.o.Confidence)
	for i := 0; ; i++ {
		if _, noReg := CompareRates(obs, hi); noReg >= threshold || i > 60 {
			break
		}
		lo, hi = hi, hi*2
	}
	for i := 0; i < 40; i++ {
		mid := (lo + hi) / 2
		if _, noReg := CompareRates(obs, mid); noReg >= threshold {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// exposureRate is the exposure per wall minute of the runs so far.
func (e *engine) exposureRate() float64 {
	var x float64
	var w time.Duration
	for _, a := range append([]*arm{e.base}, e.targets...) {
		x += a.row.Exposure
		w += a.wall
	}
	if w <= 0 || x <= 0 {
		return 1
	}
	return x / w.Minutes()
}

// exposureText says how much exposure x is: runs, or minutes of traffic
// (testcases.Report.Exposure).
func (e *engine) exposureText(x float64) string {
	if e.trials {
		return fmt.Sprintf("%.0f runs", math.Ceil(x))
	}
	return fmt.Sprintf("%.1f min of traffic", x)
}

// needText says how much more exposure x is needed.
func (e *engine) needText(x float64) string {
	if e.trials {
		return fmt.Sprintf("%.0f more runs", math.Ceil(x))
	}
	return fmt.Sprintf("%.1f more minutes of traffic", x)
}

// rateUnits converts a rate per unit of exposure to what the report shows:
// failures per hour, or the failure probability of a run.
func (e *engine) rateUnits(r float64) float64 {
	if e.trials {
		return -math.Expm1(-r)
	}
	return r * 60
}

// rateText describes evidence's failure rate with its 95% interval.
func (e *engine) rateText(ev Evidence) string {
	r, lo, hi := ev.Rate(0.95)
	if e.trials {
		return fmt.Sprintf("%.3g of runs fail [95%%: %.3g, %.3g]", e.rateUnits(r), e.rateUnits(lo), e.rateUnits(hi))
	}
	return fmt.Sprintf("%.0f/h [95%%: %.0f, %.0f]", e.rateUnits(r), e.rateUnits(lo), e.rateUnits(hi))
}

// toleranceText describes a's tolerance.
func (e *engine) toleranceText(a *arm) string {
	if e.trials {
		return fmt.Sprintf("%.3g of runs", a.row.Tolerance)
	}
	return fmt.Sprintf("%.1f/h", a.row.Tolerance)
}

// observations returns the runs of the base and of a, in the order they
// ran.
func (e *engine) observations(a *arm) []Observation {
	var out []Observation
	for _, h := range e.history {
		if h.arm == e.base || h.arm == a {
			out = append(out, h.obs)
		}
	}
	return out
}

// decideRegression concludes a's regression question if the evidence
// allows; final concludes inconclusive otherwise.
func (e *engine) decideRegression(a *arm, final bool) bool {
	if a.row.Runs == 0 && !final {
		return false
	}
	ev, bev := a.row.Evidence, e.base.row.Evidence
	threshold := 1 / (1 - e.o.Confidence)
	reg, noReg := a.cmp.EValues()
	switch {
	case reg >= threshold:
		a.row.Conclusion, a.row.Probability = Regression, 1-1/reg
		a.row.Detail = fmt.Sprintf("%d failure(s) in %s against %d in %s on the base: it fails more often than the base, at confidence %.4f",
			ev.Failures, e.exposureText(ev.Exposure), bev.Failures, e.exposureText(bev.Exposure), 1-1/reg)
		return true
	case noReg >= threshold:
		a.row.Conclusion, a.row.Probability = NoRegression, 1-1/noReg
		a.row.Detail = fmt.Sprintf("%d failure(s) in %s (base: %d in %s): it does not add failures at %s or more, at confidence %.4f",
			ev.Failures, e.exposureText(ev.Exposure), bev.Failures, e.exposureText(bev.Exposure), e.toleranceText(a), 1-1/noReg)
		return true
	case !final:
		return false
	}
	a.row.Conclusion = Inconclusive
	need := e.needRegression(a, threshold)
	if math.IsInf(need, 1) {
		a.row.Detail = fmt.Sprintf("%d failure(s) in %s (base: %d in %s): at these rates no more testing decides within a tolerance of %s; give a larger --tolerance",
			ev.Failures, e.exposureText(ev.Exposure), bev.Failures, e.exposureText(bev.Exposure), e.toleranceText(a))
		return true
	}
	a.row.Need = need
	a.row.Detail = fmt.Sprintf("%d failure(s) in %s (base: %d in %s): need %s",
		ev.Failures, e.exposureText(ev.Exposure), bev.Failures, e.exposureText(bev.Exposure), e.needText(need))
	return true
}

// needRegression estimates the further exposure after which one
// answer reaches the confidence if both trees go on failing as often as
// they did: it extends the runs with runs as long as the average so far,
// failures spread evenly at the observed frequency, the base running as
// the engine would run it.
func (e *engine) needRegression(a *arm, threshold float64) float64 {
	cmp := *a.cmp
	ev, bev := a.row.Evidence, e.base.row.Evidence
	type gen struct{ freq, acc, exposure float64 }
	mk := func(x Evidence) *gen {
		g := &gen{exposure: 1}
		if x.Runs > 0 {
			g.freq = float64(x.Failures) / float64(x.Runs)
			g.exposure = x.Exposure / float64(x.Runs)
		}
		return g
	}
	gp, gb := mk(ev), mk(bev)
	tp, tb, fp := ev.Exposure, bev.Exposure, ev.Failures
	added := 0.0
	for i := 0; i < 200000; i++ {
		g, patched := gp, true
		if fp > 0 && tb < tp {
			g, patched = gb, false
		}
		g.acc += g.freq
		failed := g.acc >= 1
		if failed {
			g.acc--
		}
		cmp.Add(Observation{Patched: patched, Failed: failed, Exposure: g.exposure, Trial: e.trials})
		added += g.exposure
		if patched {
			tp += g.exposure
			if failed {
				fp++
			}
		} else {
			tb += g.exposure
		}
		if reg, noReg := cmp.EValues(); reg >= threshold || noReg >= threshold {
			return added
		}
	}
	return math.Inf(1)
}
