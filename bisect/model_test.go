package bisect

import (
	"math"
	"testing"
)

// integrate computes ∫ f over (0, hi) numerically: midpoint rule on grids
// dense at both ends (log-spaced in x on (0, hi/2], in hi-x on [hi/2, hi)),
// for integrands with singularities at 0 and hi.
func integrate(f func(x float64) float64, hi float64) float64 {
	const n = 20000
	half := func(g func(y float64) float64) float64 {
		lo, top := math.Log(1e-14), math.Log(hi/2)
		var s float64
		for i := 0; i < n; i++ {
			a := math.Exp(lo + (top-lo)*float64(i)/n)
			b := math.Exp(lo + (top-lo)*float64(i+1)/n)
			s += g((a+b)/2) * (b - a)
		}
		return s
	}
	return half(f) + half(func(y float64) float64 { return f(hi - y) })
}

// TestMarginalLikelihood checks the closed forms against numerical
// integration over the rate.
func TestMarginalLikelihood(t *testing.T) {
	for _, tc := range []struct {
		unit Unit
		F, E float64
	}{{UnitRuns, 1, 0}, {UnitRuns, 3, 17}, {UnitRuns, 12, 240}, {UnitTime, 1, 0.5}, {UnitTime, 4, 33}} {
		m := newRateModel(tc.unit, ModelParams{})
		a, b := m.p.PriorA, m.p.PriorB
		var num float64
		if tc.unit == UnitRuns {
			num = integrate(func(p float64) float64 {
				prior := math.Exp((a-1)*math.Log(p)+(b-1)*math.Log1p(-p)) / math.Exp(lbeta(a, b))
				return prior * math.Pow(p, tc.F) * math.Pow(1-p, tc.E)
			}, 1)
		} else {
			lg, _ := math.Lgamma(a)
			num = integrate(func(l float64) float64 {
				prior := math.Exp(a*math.Log(b) + (a-1)*math.Log(l) - b*l - lg)
				return prior * math.Pow(l, tc.F) * math.Exp(-l*tc.E)
			}, 400)
		}
		got := math.Exp(m.logML(tc.F, tc.E))
		if math.Abs(got-num)/num > 1e-3 {
			t.Errorf("%s F=%g E=%g: closed form %g, integral %g", tc.unit, tc.F, tc.E, got, num)
		}
		// passBad is the ratio of marginals.
		for _, e := range []float64{1, 3, 8} {
			want := math.Exp(m.logML(tc.F, tc.E+e) - m.logML(tc.F, tc.E))
			if got := m.passBad(tc.F, tc.E, e); math.Abs(got-want) > 1e-9 {
				t.Errorf("%s passBad(%g, %g, %g) = %g, want %g", tc.unit, tc.F, tc.E, e, got, want)
			}
		}
	}
}

func TestPosterior(t *testing.T) {
	s := NewSearch(101, UnitRuns, ModelParams{})
	if pos, p := s.Best(); p > 0.05 {
		t.Errorf("prior: best %d with %g", pos, p)
	}
	var sum float64
	for _, v := range s.Posterior() {
		sum += v
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("posterior sums to %g", sum)
	}
	s.Record(100, true, 1)
	for i := 0; i < 30; i++ {
		s.Record(59, false, 1)
	}
	s.Record(60, true, 1)
	s.Record(60, true, 1)
	s.Record(80, true, 1)
	pos, p := s.Best()
	if pos != 60 || p < 0.9 {
		t.Errorf("best %d with %.3g, want 60", pos, p)
	}
	// P(bad) is monotone and 1 at a commit that failed (up to the small
	// false-failure probability).
	prev := 0.0
	for i := 0; i < s.Len(); i++ {
		pb := s.ProbBad(i)
		if pb < prev-1e-12 {
			t.Fatalf("P(bad) not monotone at %d: %g < %g", i, pb, prev)
		}
		prev = pb
	}
	if s.ProbBad(60) < 0.99 || s.ProbBad(59) > 0.05 {
		t.Errorf("P(bad) at 59, 60: %g, %g", s.ProbBad(59), s.ProbBad(60))
	}
	// More passes at the parent make the culprit surer.
	for i := 0; i < 30; i++ {
		s.Record(59, false, 1)
	}
	if _, p2 := s.Best(); p2 <= p {
		t.Errorf("more passes at the parent: %g -> %g", p, p2)
	}
	// Inserting positions keeps the total mass and splits the weight.
	s.Insert(60, []float64{0.5})
	s.SetPrior(61, 0.5)
	sum = 0
	for _, v := range s.Posterior() {
		sum += v
	}
	if s.Len() != 102 || math.Abs(sum-1) > 1e-9 {
		t.Errorf("after insert: %d positions, mass %g", s.Len(), sum)
	}
	if r, f, _ := s.Stat(61); r != 2 || f != 2 {
		t.Errorf("stats did not move with the insert: %d runs %g fails", r, f)
	}
}

func TestPlanPrefersInformativeTests(t *testing.T) {
	s := NewSearch(1025, UnitRuns, ModelParams{})
	s.Record(1024, true, 1)
	req, ok := s.plan(Costs{Build: 2, Run: 1}, exposureOptions(UnitRuns, 0, 0), nil)
	if !ok || req.Pos < 200 || req.Pos > 800 {
		t.Errorf("first test at %d (ok %v), want near the middle", req.Pos, ok)
	}
	// With one commit left undecided, the planner tests around it.
	s2 := NewSearch(11, UnitRuns, ModelParams{})
	s2.Record(10, true, 1)
	for i := 0; i < 3; i++ {
		s2.Record(4, false, 1)
	}
	s2.Record(5, true, 1)
	req, ok = s2.plan(Costs{Build: 2, Run: 1}, exposureOptions(UnitRuns, 0, 0), nil)
	if !ok || (req.Pos != 4 && req.Pos != 5) {
		t.Errorf("next test at %d, want 4 or 5", req.Pos)
	}
}

func TestTimeModelRate(t *testing.T) {
	// A time-based search learns the rate per minute from fail times.
	s := NewSearch(3, UnitTime, ModelParams{})
	for i := 0; i < 40; i++ {
		s.Record(2, true, 2) // a failure every 2 minutes
	}
	if r := s.RateEstimate(); math.Abs(r-0.5) > 0.05 {
		t.Errorf("rate %g per minute, want about 0.5", r)
	}
}

// TestTarget checks the posterior the search stops at: Margin·(1-Confidence)
// of error while a run rarely fails, all of 1-Confidence once it nearly
// always does; in time mode the rate per run is that of a RunBase-minute run
// at the test's yield of exposure per minute.
func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unit    Unit
		runBase float64
		yield   float64 // exposure per minute of test (time mode; 0 means 1)
		fails   int     // failures recorded on bad
		each    float64 // exposure of each: runs, or minutes to the failure
		passes  int     // passes recorded on bad (runs mode)
		want    float64
	}{
		{"runs, fails 1 run in 10", UnitRuns, 0, 0, 10, 1, 90, 0.995},
		{"runs, fails every run", UnitRuns, 0, 0, 40, 1, 0, 0.99},
		{"time, 1 fail per 20 min, 1-min runs", UnitTime, 1, 0, 40, 20, 0, 0.995},
		{"time, 1 fail per min, 1-min runs", UnitTime, 1, 0, 40, 1, 0, 0.9917},
		{"time, 1 fail per 20 s, 1-min runs", UnitTime, 1, 0, 40, 1.0 / 3, 0, 0.99},
		{"time, 1 fail per min, 20-s runs", UnitTime, 1.0 / 3, 0, 40, 1, 0, 0.995},
		// The demo: 20-s runs of traffic at 4.5 times the reference.
		{"time, 1 fail per min of exposure, 20-s runs of 90 s", UnitTime, 1.0 / 3, 4.5, 40, 1, 0, 0.9903},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore(11, Plan{Unit: tc.unit, RunBase: tc.runBase, Confidence: 0.99, Costs: Costs{Yield: tc.yield}})
			for i := 0; i < tc.fails; i++ {
				c.Record(10, true, tc.each, tc.each)
			}
			for i := 0; i < tc.passes; i++ {
				c.Record(10, false, 1, 1)
			}
			if got := c.target(c.Search); math.Abs(got-tc.want) > 5e-4 {
				t.Errorf("target %.4f, want %.4f (rate estimate %.3g)", got, tc.want, c.Search.RateEstimate())
			}
		})
	}
}
