package validate

import (
	"math"
)

// The statistics of validation. A kernel's failures are a Poisson process
// in minutes of test with an unknown rate λ; a run that stops at its first
// failure contributes one failure and its time to that failure, a run that
// passes its whole duration. The prior on λ is Jeffreys' Gamma(1/2, 0), so
// f failures in T minutes give the posterior Gamma(1/2+f, T) and no unit of
// time is favoured. Tests are one-sided: a failure proves the bug is there,
// a pass only makes it less likely.

// priorShape is the shape of the Jeffreys prior on a failure rate.
const priorShape = 0.5

// Evidence is what the runs of one kernel showed.
type Evidence struct {
	// Runs counts the runs that gave a verdict (pass or fail).
	Runs int `json:"runs"`
	// Failures counts the failed runs.
	Failures int `json:"failures"`
	// Minutes is the test time the runs accumulated (for a failed run,
	// until its first failure).
	Minutes float64 `json:"minutes"`
}

// Add records one run: failed or not, after minutes of test.
func (e *Evidence) Add(failed bool, minutes float64) {
	e.Runs++
	if failed {
		e.Failures++
	}
	e.Minutes += minutes
}

// posterior returns the shape and rate (per minute) of the Gamma posterior
// of the failure rate.
func (e Evidence) posterior() (shape, rate float64) {
	return priorShape + float64(e.Failures), e.Minutes
}

// PerHour returns the observed failure rate per hour (failures over test
// time; 0 before any test) and its equal-tailed posterior interval at level
// (e.g. 0.95). With no failure the lower end is 0.
func (e Evidence) PerHour(level float64) (rate, lo, hi float64) {
	if e.Minutes <= 0 {
		return 0, 0, math.Inf(1)
	}
	a, b := e.posterior()
	rate = float64(e.Failures) / e.Minutes * 60
	tail := (1 - level) / 2
	if e.Failures > 0 {
		lo = gammaQuantile(a, tail) / b * 60
	}
	hi = gammaQuantile(a, 1-tail) / b * 60
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
	if base.Failures == 0 || base.Minutes <= 0 {
		return prior
	}
	a, b := base.posterior()
	// Marginal likelihood ratio of "not fixed" to "fixed": the chance that a
	// kernel with the base's (uncertain) rate survives t minutes,
	// E[exp(-λt)] = (b/(b+t))^a.
	logLR := -a * math.Log1p(patched.Minutes/b)
	odds := prior / (1 - prior) / math.Exp(logLR)
	return odds / (1 + odds)
}

// MinutesToFix is how many failure-free minutes the patched kernel needs
// for PFixed to reach confidence, given the base's evidence; +Inf when the
// base never failed.
func MinutesToFix(base Evidence, confidence, prior float64) float64 {
	if base.Failures == 0 || base.Minutes <= 0 {
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
// MinutesToFix then asks for, T·exp(L/(1/2+λT)), whose optimum has
// (1/2+x)² = L·x for x = λT.
func baseTarget(confidence, prior float64) float64 {
	l := logOdds(confidence, prior)
	d := (l-1)*(l-1) - 1
	if d < 0 {
		return 1
	}
	return math.Max(1, ((l-1)+math.Sqrt(d))/2)
}

// PWorse is the probability that the patched kernel fails more often than
// the base: P(λp > λb) for independent Gamma posteriors, which is a Beta
// tail: U/(U+V) ~ Beta(ap, ab) for U = bp·λp, V = bb·λb.
func PWorse(patched, base Evidence) float64 {
	if patched.Minutes <= 0 {
		return 0
	}
	if base.Minutes <= 0 {
		return 0.5
	}
	ap, bp := patched.posterior()
	ab, bb := base.posterior()
	return 1 - betaInc(ap, ab, bp/(bp+bb))
}

// PWithin is the probability that the patched kernel's failure rate exceeds
// the base's by less than tolerance (per minute): P(λp < λb + tolerance).
func PWithin(patched, base Evidence, tolerance float64) float64 {
	if patched.Minutes <= 0 {
		return 0
	}
	ap, bp := patched.posterior()
	if base.Minutes <= 0 {
		return gammaP(ap, bp*tolerance)
	}
	ab, bb := base.posterior()
	// Average over the base's posterior by its quantiles.
	const n = 200
	sum := 0.0
	for i := 0; i < n; i++ {
		y := gammaQuantile(ab, (float64(i)+0.5)/n) / bb
		sum += gammaP(ap, bp*(y+tolerance))
	}
	return sum / n
}

// ExcludedRate is the rate (per minute) that failure-free minutes exclude
// at confidence: the confidence quantile of the posterior Gamma(1/2, t).
func ExcludedRate(minutes, confidence float64) float64 {
	if minutes <= 0 {
		return math.Inf(1)
	}
	return gammaQuantile(priorShape, confidence) / minutes
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

// betaInc is the regularized incomplete beta function I_x(a, b).
func betaInc(a, b, x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	front := math.Exp(lab - la - lb + a*math.Log(x) + b*math.Log1p(-x))
	if x < (a+1)/(a+b+2) {
		return front * betaCF(a, b, x) / a
	}
	return 1 - front*betaCF(b, a, 1-x)/b
}

// betaCF evaluates the continued fraction of the incomplete beta function
// (modified Lentz).
func betaCF(a, b, x float64) float64 {
	const tiny = 1e-300
	qab, qap, qam := a+b, a+1, a-1
	c, d := 1.0, 1-qab*x/qap
	if math.Abs(d) < tiny {
		d = tiny
	}
	d = 1 / d
	h := d
	for m := 1; m < 1000; m++ {
		fm := float64(m)
		m2 := 2 * fm
		aa := fm * (b - fm) * x / ((qam + m2) * (a + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		h *= d * c
		aa = -(a + fm) * (qab + fm) * x / ((a + m2) * (qap + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
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
	return h
}
