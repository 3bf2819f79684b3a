package validate

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

func TestSpecialFunctions(t *testing.T) {
	for _, x := range []float64{0.01, 0.3, 1, 2.5, 7, 30} {
		// P(1, x) = 1 - e^-x; P(1/2, x) = erf(sqrt x).
		if got, want := gammaP(1, x), -math.Expm1(-x); !near(got, want, 1e-12) {
			t.Errorf("P(1, %g) = %g, want %g", x, got, want)
		}
		if got, want := gammaP(0.5, x), math.Erf(math.Sqrt(x)); !near(got, want, 1e-12) {
			t.Errorf("P(1/2, %g) = %g, want %g", x, got, want)
		}
		// P(n, x) = 1 - e^-x sum_{k<n} x^k/k!.
		sum, term := 0.0, 1.0
		for k := 0; k < 4; k++ {
			sum += term
			term *= x / float64(k+1)
		}
		if got, want := gammaP(4, x), 1-math.Exp(-x)*sum; !near(got, want, 1e-11) {
			t.Errorf("P(4, %g) = %g, want %g", x, got, want)
		}
	}
	for _, p := range []float64{0.025, 0.5, 0.95, 0.99} {
		for _, a := range []float64{0.5, 1, 3.5, 20} {
			if got := gammaP(a, gammaQuantile(a, p)); !near(got, p, 1e-10) {
				t.Errorf("P(%g, Q(%g)) = %g", a, p, got)
			}
		}
	}
}

func TestPerHour(t *testing.T) {
	cases := []struct {
		name string
		ev   Evidence
	}{
		{"no failure", Evidence{Runs: 10, Exposure: 10}},
		{"one failure", Evidence{Runs: 3, Failures: 1, Exposure: 2}},
		{"many", Evidence{Runs: 40, Failures: 30, Exposure: 9}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rate, lo, hi := tc.ev.Rate(0.95)
			if want := float64(tc.ev.Failures) / tc.ev.Exposure; !near(rate, want, 1e-12) {
				t.Errorf("rate %g, want %g", rate, want)
			}
			if !(lo <= rate && rate < hi) {
				t.Errorf("interval [%g, %g] does not hold the rate %g", lo, hi, rate)
			}
			// The interval holds 95% of the posterior Gamma(1/2+f, T).
			a, b := tc.ev.posterior()
			mass := gammaP(a, hi*b) - gammaP(a, lo*b)
			want := 0.95
			if tc.ev.Failures == 0 {
				want = 0.975
			}
			if !near(mass, want, 1e-6) {
				t.Errorf("interval [%g, %g] holds %g of the posterior, want %g", lo, hi, mass, want)
			}
		})
	}
}

// TestPFixedMatchesIntegral checks the closed form of PFixed against a
// numerical integral over the base's posterior.
func TestPFixedMatchesIntegral(t *testing.T) {
	for _, tc := range []struct {
		base    Evidence
		patched float64
	}{
		{Evidence{Runs: 3, Failures: 3, Exposure: 0.75}, 2},
		{Evidence{Runs: 5, Failures: 1, Exposure: 4}, 10},
		{Evidence{Runs: 20, Failures: 12, Exposure: 15}, 1},
	} {
		a, b := tc.base.posterior()
		const n = 20000
		survive := 0.0
		for i := 0; i < n; i++ {
			lambda := gammaQuantile(a, (float64(i)+0.5)/n) / b
			survive += math.Exp(-lambda * tc.patched)
		}
		survive /= n
		want := 0.5 / (0.5 + 0.5*survive)
		got := PFixed(tc.base, Evidence{Runs: 1, Exposure: tc.patched}, 0.5)
		if !near(got, want, 1e-4) {
			t.Errorf("PFixed(%+v, %g min) = %g, integral gives %g", tc.base, tc.patched, got, want)
		}
		// ExposureToFix is where PFixed reaches the confidence.
		m := ExposureToFix(tc.base, 0.99, 0.5)
		if p := PFixed(tc.base, Evidence{Runs: 1, Exposure: m}, 0.5); !near(p, 0.99, 1e-9) {
			t.Errorf("PFixed after ExposureToFix = %g, want 0.99", p)
		}
	}
	if p := PFixed(Evidence{Runs: 3, Failures: 2, Exposure: 1}, Evidence{Runs: 9, Failures: 1, Exposure: 5}, 0.5); p != 0 {
		t.Errorf("PFixed after a patched failure = %g, want 0", p)
	}
	if m := ExposureToFix(Evidence{Runs: 5, Exposure: 5}, 0.99, 0.5); !math.IsInf(m, 1) {
		t.Errorf("ExposureToFix with a base that never failed = %g, want +Inf", m)
	}
}

func TestNeedForFix(t *testing.T) {
	base, patched := Evidence{Runs: 4, Failures: 1, Exposure: 15}, Evidence{Runs: 7, Exposure: 14}
	sb, sp := NeedForFix(base, patched, 0.99, 0.5)
	onlyPatched := ExposureToFix(base, 0.99, 0.5) - patched.Exposure
	if sb+sp > onlyPatched {
		t.Errorf("need %g+%g minutes, more than patched runs alone (%g)", sb, sp, onlyPatched)
	}
	rate := float64(base.Failures) / base.Exposure
	more := Evidence{Failures: base.Failures + int(rate*sb), Exposure: base.Exposure + sb}
	if p := PFixed(more, Evidence{Runs: 1, Exposure: patched.Exposure + sp}, 0.5); p < 0.99-1e-9 {
		t.Errorf("after the need, PFixed = %g, want >= 0.99", p)
	}
}

// TestCompareRatesIsValid checks the promise of CompareRates directly:
// when the hypothesis an e-value argues against is true, the e-value, checked
// after every run, reaches 1/α in at most about α of the sequences.
func TestCompareRatesIsValid(t *testing.T) {
	const seqs, runs, alpha = 400, 300, 0.01
	cases := []struct {
		name              string
		trials            bool
		base, patched     float64 // rates (per minute, or per run)
		tolerance         float64
		againstRegression bool // the e-value that must not cross: no regression's (true) or regression's
	}{
		{"equal rates in time", false, 2, 2, 1, false},
		{"equal rates, trials", true, 0.4, 0.4, 0.3, false},
		{"regression of the tolerance in time", false, 1, 2, 1, true},
		{"regression of the tolerance, trials", true, 0.2, 0.5, 0.3, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 5))
			crossed := 0
			for s := 0; s < seqs; s++ {
				c := RateComparison{Tolerance: tc.tolerance}
				for i := 0; i < runs; i++ {
					patched := i%2 == 1
					rate := tc.base
					if patched {
						rate = tc.patched
					}
					o := Observation{Patched: patched, Trial: tc.trials, Exposure: 1}
					if tc.trials {
						o.Failed = rng.Float64() < -math.Expm1(-rate)
					} else {
						// Runs of up to 1 minute that stop at the first failure.
						if f := rng.ExpFloat64() / rate; f < 1 {
							o.Failed, o.Exposure = true, f
						}
					}
					c.Add(o)
					reg, noReg := c.EValues()
					e := reg
					if tc.againstRegression {
						e = noReg
					}
					if e >= 1/alpha {
						crossed++
						break
					}
				}
			}
			allowed := alpha*seqs + 3*math.Sqrt(alpha*seqs)
			if float64(crossed) > allowed {
				t.Errorf("%d of %d sequences crossed 1/α = %g (allowed %.0f)", crossed, seqs, 1/alpha, allowed)
			}
			t.Logf("%d of %d crossed", crossed, seqs)
		})
	}
}
