package validate

import (
	"math"
)

// The statistics of validation. A kernel's failures are a Poisson process
// in its exposure to the test with an unknown rate λ: minutes of test for
// the kernel test, where a run stops at its first failure and contributes
// one failure and its time to that failure, and a run that passes its whole
// duration; runs for an --exec command, which only says whether a run
// failed (each run is one unit; it fails with probability 1-e^(-λ)). The
// prior on λ is Jeffreys' Gamma(1/2, 0), so f failures in exposure T give
// the posterior Gamma(1/2+f, T) (for runs an approximation that
// underestimates λ when runs fail often, which only makes a fix take
// longer to show) and no unit is favoured. Tests are one-sided: a failure
// proves the bug is there, a pass only makes it less likely.

// priorShape is the shape of the Jeffreys prior on a failure rate.
const priorShape = 0.5

// Evidence is what the runs of one kernel showed.
type Evidence struct {
	// Runs counts the runs that gave a verdict (pass or fail).
	Runs int `json:"runs"`
	// Failures counts the failed runs.
	Failures int `json:"failures"`
	// Exposure is what the runs accumulated: minutes of test (for a
	// failed kernel run, until its first failure), or runs for --exec.
	Exposure float64 `json:"exposure"`
}

// Add records one run: failed or not, after exposure.
func (e *Evidence) Add(failed bool, exposure float64) {
	e.Runs++
	if failed {
		e.Failures++
	}
	e.Exposure += exposure
}

// posterior returns the shape and rate of the Gamma posterior of the
// failure rate (per unit of exposure).
func (e Evidence) posterior() (shape, rate float64) {
	return priorShape + float64(e.Failures), e.Exposure
}

// Rate returns the observed failure rate per unit of exposure (0 before
// any test) and its equal-tailed posterior interval at level (e.g. 0.95).
// With no failure the lower end is 0.
func (e Evidence) Rate(level float64) (rate, lo, hi float64) {
	if e.Exposure <= 0 {
		return 0, 0, math.Inf(1)
	}
	a, b := e.posterior()
	rate = float64(e.Failures) / e.Exposure
	tail := (1 - level) / 2
	if e.Failures > 0 {
		lo = gammaQuantile(a, tail) / b
	}
	hi = gammaQuantile(a, 1-tail) / b
	return rate, lo, hi
}

// logOdds is the log of the posterior odds that reach confidence from
// prior (both probabilities of the same hypothesis).
func logOdds(confidence, prior float64) float64 {
	return math.Log(confidence/(1-confidence)) - math.Log(prior/(1-prior))
}

// PFixed is the probability that a patched kernel no longer has the base's
// bug, given the base's evidence, the patched kernel's, and the prior
// probability of a fix. Under "not fixed" the patched kernel fails at the
// base's rate; under "fixed" it never fails. One failure of the patched
// kernel proves it is not fixed (0); a base that never failed cannot show
// a fix (prior).
func PFixed(base, patched Evidence, prior float64) float64 {
	if patched.Failures > 0 {
		return 0
	}
	if base.Failures == 0 || base.Exposure <= 0 {
		return prior
	}
	a, b := base.posterior()
	// Marginal likelihood ratio of "not fixed" to "fixed": the chance that a
	// kernel with the base's (uncertain) rate survives t minutes,
	// E[exp(-λt)] = (b/(b+t))^a.
	logLR := -a * math.Log1p(patched.Exposure/b)
	odds := prior / (1 - prior) / math.Exp(logLR)
	return odds / (1 + odds)
}

// ExposureToFix is how much failure-free exposure the patched kernel needs
// for PFixed to reach confidence, given the base's evidence; +Inf when the
// base never failed.
func ExposureToFix(base Evidence, confidence, prior float64) float64 {
	if base.Failures == 0 || base.Exposure <= 0 {
		return math.Inf(1)
	}
	a, b := base.posterior()
	l := logOdds(confidence, prior)
	if l <= 0 {
		return 0
	}
	return b * math.Expm1(l/a)
}

// baseTarget is the expected number of base failures after which more base
// testing no longer pays: it minimises base time plus the patched time
// ExposureToFix then asks for, T·exp(L/(1/2+λT)), whose optimum has
// (1/2+x)² = L·x for x = λT.
func baseTarget(confidence, prior float64) float64 {
	l := logOdds(confidence, prior)
	d := (l-1)*(l-1) - 1
	if d < 0 {
		return 1
	}
	return math.Max(1, ((l-1)+math.Sqrt(d))/2)
}

// NeedForFix is the least further test time, split between the base and
// the patched kernel, after which a patched kernel that keeps passing is
// called fixed, if the base keeps failing at the rate seen so far: more
// base time makes its rate surer, so the patched kernel needs less.
func NeedForFix(base, patched Evidence, confidence, prior float64) (baseMore, patchedMore float64) {
	if base.Failures == 0 || base.Exposure <= 0 {
		return math.Inf(1), math.Inf(1)
	}
	rate := float64(base.Failures) / base.Exposure
	best := math.Inf(1)
	for i := 0; i <= 400; i++ {
		sb := 0.0
		if i > 0 {
			sb = base.Exposure * math.Pow(10, -2+float64(i)/100) // 1% .. 100x
		}
		more := Evidence{Failures: base.Failures + int(math.Floor(rate*sb)), Exposure: base.Exposure + sb}
		sp := math.Max(0, ExposureToFix(more, confidence, prior)-patched.Exposure)
		if sb+sp < best {
			best, baseMore, patchedMore = sb+sp, sb, sp
		}
	}
	return baseMore, patchedMore
}

// Observation is one run in a comparison of two kernels' failure rates.
type Observation struct {
	// Patched says which kernel ran: the patched one or the base.
	Patched bool
	Failed  bool
	// Exposure of the run: minutes of test to the first failure, or 1
	// for a Trial.
	Exposure float64
	// Trial is a run that only says whether it failed (--exec): its
	// exposure is one unit.
	Trial bool
}

// logLik is the log likelihood of a run under failure rate r: a pass is
// survival e^(-r·m); a failure the density r·e^(-r·m) of failing at m, or
// for a trial the chance 1-e^(-r·m) of failing at all.
func logLik(o Observation, r float64) float64 {
	if !o.Failed {
		return -r * o.Exposure
	}
	if r <= 0 {
		return math.Inf(-1)
	}
	if o.Trial {
		return math.Log(-math.Expm1(-r * o.Exposure))
	}
	return math.Log(r) - r*o.Exposure
}

// CompareRates weighs the runs of two kernels for the regression question
// and returns two e-values: evidence that the patched kernel fails more
// often than the base by tolerance (per minute) or more (regression), and
// evidence that it does not (no regression). Each is a likelihood ratio
// whose numerator predicts every run from the runs before it (rates
// estimated from the past, within the hypothesis to show) and whose
// denominator is the best fit of the hypothesis to reject ("universal
// inference"): its chance of ever reaching 1/α when that hypothesis is
// true is at most α, however often it is checked. Runs before both kernels
// have run once only inform the estimates.
func CompareRates(obs []Observation, tolerance float64) (regression, noRegression float64) {
	c := RateComparison{Tolerance: tolerance}
	for _, o := range obs {
		c.Add(o)
	}
	return c.EValues()
}

// RateComparison computes CompareRates run by run.
type RateComparison struct {
	// Tolerance is the rate increase (per minute) that counts as a
	// regression.
	Tolerance float64
	// All runs (for the estimates), and those after the start (for the
	// denominators).
	fb, fp, sfb, sfp int
	tb, tp, stb, stp float64
	started          bool
	// trials is set once a run is a trial: all runs are then trials of
	// one unit.
	trials           bool
	logReg, logNoReg float64
}

// estimate is the rate a kernel's past runs predict: Jeffreys' posterior
// mean, for trials of the failure probability.
func (c *RateComparison) estimate(f int, t float64) float64 {
	if c.trials {
		return -math.Log1p(-(float64(f) + priorShape) / (t + 1))
	}
	return (float64(f) + priorShape) / t
}

// Add records the next run.
func (c *RateComparison) Add(o Observation) {
	if o.Trial {
		c.trials = true
	}
	if !c.started && c.tb > 0 && c.tp > 0 {
		c.started = true
	}
	if c.started {
		lb := c.estimate(c.fb, c.tb)
		lp := c.estimate(c.fp, c.tp)
		if o.Patched {
			c.logReg += logLik(o, math.Max(lp, lb+c.Tolerance))
			c.logNoReg += logLik(o, math.Min(lp, lb+c.Tolerance/2))
			c.stp += o.Exposure
			if o.Failed {
				c.sfp++
			}
		} else {
			c.logReg += logLik(o, lb)
			c.logNoReg += logLik(o, lb)
			c.stb += o.Exposure
			if o.Failed {
				c.sfb++
			}
		}
	}
	if o.Patched {
		c.tp += o.Exposure
		if o.Failed {
			c.fp++
		}
	} else {
		c.tb += o.Exposure
		if o.Failed {
			c.fb++
		}
	}
}

// EValues returns the e-values for a regression and for no regression.
func (c *RateComparison) EValues() (regression, noRegression float64) {
	if !c.started {
		return 1, 1
	}
	m := model{trials: c.trials}
	reg := c.logReg - m.maxLogLikEqual(c.sfb, c.sfp, c.stb, c.stp)
	noReg := c.logNoReg - m.maxLogLikWorse(c.sfb, c.sfp, c.stb, c.stp, c.Tolerance)
	return math.Exp(math.Min(reg, 700)), math.Exp(math.Min(noReg, 700))
}

// poissonLogLik is the log likelihood of f failures in t minutes at rate r.
func poissonLogLik(f int, t, r float64) float64 {
	if f == 0 {
		return -r * t
	}
	if r <= 0 {
		return math.Inf(-1)
	}
	return float64(f)*math.Log(r) - r*t
}

// trialsLogLik is the log likelihood of f failures in n runs that each
// fail with probability 1-e^(-r).
func trialsLogLik(f int, n, r float64) float64 {
	pass := n - float64(f)
	switch {
	case f == 0:
		return -r * pass
	case r <= 0:
		return math.Inf(-1)
	case math.IsInf(r, 1):
		if pass > 0 {
			return math.Inf(-1)
		}
		return 0
	}
	return float64(f)*math.Log(-math.Expm1(-r)) - r*pass
}

// model is how runs fail: in time (Poisson) or as trials.
type model struct{ trials bool }

// ll is the log likelihood of f failures in exposure t at rate r.
func (m model) ll(f int, t, r float64) float64 {
	if m.trials {
		return trialsLogLik(f, t, r)
	}
	return poissonLogLik(f, t, r)
}

// mle is the rate that best explains f failures in exposure t.
func (m model) mle(f int, t float64) float64 {
	if t <= 0 {
		return 0
	}
	q := float64(f) / t
	if m.trials {
		if q >= 1 {
			return math.Inf(1)
		}
		return -math.Log1p(-q)
	}
	return q
}

// maxLogLikEqual is the best log likelihood of both kernels failing at one
// rate.
func (m model) maxLogLikEqual(fb, fp int, tb, tp float64) float64 {
	r := m.mle(fb+fp, tb+tp)
	return m.ll(fb, tb, r) + m.ll(fp, tp, r)
}

// maxLogLikWorse is the best log likelihood of the patched kernel failing
// at the base's rate plus at least tolerance. On the boundary λp = λb +
// tolerance the log likelihood is concave in λb: the best λb is found by
// bisection on its slope.
func (m model) maxLogLikWorse(fb, fp int, tb, tp, tolerance float64) float64 {
	rb, rp := m.mle(fb, tb), m.mle(fp, tp)
	if tp > 0 && rp >= rb+tolerance {
		return m.ll(fb, tb, rb) + m.ll(fp, tp, rp)
	}
	on := func(lb float64) float64 { return m.ll(fb, tb, lb) + m.ll(fp, tp, lb+tolerance) }
	const h = 1e-7
	slope := func(lb float64) float64 { return (on(lb+h*(1+lb)) - on(lb)) / (h * (1 + lb)) }
	if fb == 0 && slope(0) <= 0 {
		return on(0)
	}
	lo, hi := 0.0, 1.0
	for slope(hi) > 0 {
		lo, hi = hi, hi*2
		if hi > 1e9 {
			return on(hi)
		}
	}
	for i := 0; i < 100; i++ {
		mid := (lo + hi) / 2
		if slope(mid) > 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return math.Max(on(lo), on(hi))
}

// ToleranceFor approximates the smallest rate increase (per unit of
// exposure) that failure-free runs of the patched kernel (on a base that
// does not fail either) rule out at confidence, for runs runs of exposure
// in all: the no-regression e-value of CompareRates then grows as
// exp(ρ·exposure) over a penalty for estimating the rate, about
// sqrt(runs).
func ToleranceFor(exposure float64, runs int, confidence float64) float64 {
	if exposure <= 0 {
		return math.Inf(1)
	}
	penalty := 0.5 * math.Log(math.Max(2, float64(runs)))
	return (math.Log(1/(1-confidence)) + penalty) / exposure
}

// gammaP is the regularized lower incomplete gamma function P(a, x).
func gammaP(a, x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case math.IsInf(x, 1):
		return 1
	}
	lg, _ := math.Lgamma(a)
	if x < a+1 {
		// Series.
		sum, term := 1/a, 1/a
		for n := 1; n < 1000; n++ {
			term *= x / (a + float64(n))
			sum += term
			if math.Abs(term) < math.Abs(sum)*1e-15 {
				break
			}
		}
		return sum * math.Exp(-x+a*math.Log(x)-lg)
	}
	// Continued fraction for Q (Lentz).
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < 1000; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return 1 - math.Exp(-x+a*math.Log(x)-lg)*h
}

// gammaQuantile returns x with P(a, x) = p (unit rate).
func gammaQuantile(a, p float64) float64 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return math.Inf(1)
	}
	lo, hi := 0.0, math.Max(1, a)
	for gammaP(a, hi) < p {
		lo, hi = hi, hi*2
	}
	for i := 0; i < 200 && hi-lo > 1e-13*hi; i++ {
		mid := (lo + hi) / 2
		if gammaP(a, mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
