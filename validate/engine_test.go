package validate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// simTester is a simulated oracle: each tree fails as a Poisson process at
// its own rate per minute of test; runs last duration minutes plus a boot
// overhead and stop at the first failure.
type simTester struct {
	rng      *rand.Rand
	rate     map[*Row]float64
	duration float64 // minutes
	overhead float64 // minutes
}

func (s *simTester) prepare(context.Context, *Row, *Row, []string) error { return nil }

func (s *simTester) run(_ context.Context, row *Row) (runResult, error) {
	r := runResult{outcome: pass, exposure: s.duration}
	if lambda := s.rate[row]; lambda > 0 {
		if t := s.rng.ExpFloat64() / lambda; t < s.duration {
			r.outcome, r.exposure = fail, t
		}
	}
	r.wall = time.Duration((r.exposure + s.overhead) * float64(time.Minute))
	return r, nil
}

// simulate runs one validation of one patch against the oracle.
func simulate(seed uint64, o Options, baseRate, patchedRate, duration float64) (*Row, *Report) {
	rep := &Report{Base: "0123456789abcdef", BaseResult: &Row{Name: "base"}}
	target := &Row{Index: 1, Name: "patch"}
	rep.Patches = []*Row{target}
	st := &simTester{
		rng:      rand.New(rand.NewPCG(seed, 99)),
		rate:     map[*Row]float64{rep.BaseResult: baseRate, target: patchedRate},
		duration: duration,
		overhead: 0.1,
	}
	e := &engine{o: o, t: st, rep: rep, base: &arm{row: rep.BaseResult}, targets: []*arm{{row: target}}}
	if err := e.run(context.Background()); err != nil {
		panic(err)
	}
	return target, rep
}

func simOptions(expect Expect, confidence float64) Options {
	o := Options{Expect: expect, Confidence: confidence, Budget: 30 * time.Minute, PriorFix: DefaultPriorFix}
	return o
}

// TestFixCalibration checks the fix question against an oracle: a patch
// that does not fix the bug must be called a fix in no more than about
// 1-confidence of the trials (the Bayes factor bounds it), and a real fix
// must be found within the budget.
func TestFixCalibration(t *testing.T) {
	const trials = 300
	cases := []struct {
		name       string
		baseRate   float64 // per minute
		duration   float64 // minutes per run
		confidence float64
		budget     time.Duration
	}{
		{"demo bug, 20s runs", 4.2, 1.0 / 3, 0.99, 30 * time.Minute},
		{"demo bug, 60s runs, 0.95", 4.2, 1, 0.95, 30 * time.Minute},
		{"rare bug, 2min runs", 0.2, 2, 0.99, 3 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := simOptions(ExpectFix, tc.confidence)
			o.Budget = tc.budget
			var wrongFix, missedFix, fixedTrials, brokenTrials int
			var fixMinutes, fixWall float64
			for i := 0; i < trials; i++ {
				fixed := i%2 == 0
				rate := tc.baseRate
				if fixed {
					rate = 0
				}
				row, rep := simulate(uint64(i), o, tc.baseRate, rate, tc.duration)
				if fixed {
					fixedTrials++
					if row.Conclusion != Fixes {
						missedFix++
						t.Logf("trial %d: a real fix concluded %q: %s", i, row.Conclusion, row.Detail)
					}
					fixMinutes += row.Exposure + rep.BaseResult.Exposure
					fixWall += rep.SpentSeconds / 60
				} else {
					brokenTrials++
					if row.Conclusion == Fixes {
						wrongFix++
					}
				}
			}
			// Binomial slack: expected <= (1-c)·n, allow 3 sigma.
			n := float64(brokenTrials)
			allowed := (1-tc.confidence)*n + 3*math.Sqrt((1-tc.confidence)*n) + 1
			if float64(wrongFix) > allowed {
				t.Errorf("%d of %d patches that do not fix were called fixes (allowed %.0f)", wrongFix, brokenTrials, allowed)
			}
			if missedFix > fixedTrials/50 {
				t.Errorf("%d of %d real fixes not found within the budget", missedFix, fixedTrials)
			}
			t.Logf("wrong fixes %d/%d, missed %d/%d; a real fix took %.2f test minutes (%.2f with boots) on average",
				wrongFix, brokenTrials, missedFix, fixedTrials, fixMinutes/float64(fixedTrials), fixWall/float64(fixedTrials))
		})
	}
}

// TestBaseThatNeverFails: a fix cannot be shown on a base without the bug.
func TestBaseThatNeverFails(t *testing.T) {
	row, rep := simulate(1, simOptions(ExpectFix, 0.99), 0, 0, 1)
	if row.Conclusion != Inconclusive || row.Runs != 0 {
		t.Errorf("conclusion %q after %d patched runs (%s), want inconclusive without patched runs", row.Conclusion, row.Runs, row.Detail)
	}
	if rep.SpentSeconds > 16*60 {
		t.Errorf("spent %.1f min on a base that never fails, want at most half the budget", rep.SpentSeconds/60)
	}
}

func TestNoRegression(t *testing.T) {
	const trials = 60
	cases := []struct {
		name          string
		base, patched float64
		tolerance     float64 // per hour; 0 = auto
		budget        time.Duration
		want          string
		atLeast       float64 // fraction of trials
	}{
		{"clean and clean", 0, 0, 0, 30 * time.Minute, NoRegression, 1},
		{"clean and clean, 30/h tolerance", 0, 0, 30, 30 * time.Minute, NoRegression, 1},
		{"new bug at 60/h", 0, 1, 0, time.Hour, Regression, 0.9},
		{"same bug on both, 120/h tolerance", 2, 2, 120, 4 * time.Hour, NoRegression, 0.95},
		{"twice the bug, 120/h tolerance", 2, 4, 120, 4 * time.Hour, Regression, 0.8},
		{"a little worse, 120/h tolerance", 2, 3, 120, 4 * time.Hour, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := simOptions(ExpectNoRegression, 0.99)
			o.Tolerance, o.Budget = tc.tolerance, tc.budget
			got := map[string]int{}
			var minutes float64
			wrong := 0
			for i := 0; i < trials; i++ {
				row, rep := simulate(uint64(1000+i), o, tc.base, tc.patched, 1)
				got[row.Conclusion]++
				minutes += rep.SpentSeconds / 60
				// Regression means "fails more often than the base", no
				// regression "not by the tolerance or more".
				if row.Conclusion == Regression && tc.patched <= tc.base ||
					row.Conclusion == NoRegression && tc.patched >= tc.base+tc.tolerance/60 && tc.patched > tc.base {
					wrong++
				}
			}
			if float64(got[tc.want]) < tc.atLeast*trials {
				t.Errorf("conclusions %v, want %s in >= %.0f%%", got, tc.want, 100*tc.atLeast)
			}
			if wrong > 0 {
				t.Errorf("the wrong answer in %d of %d trials", wrong, trials)
			}
			t.Logf("conclusions %v; %.1f min spent on average", got, minutes/trials)
		})
	}
}

// TestInconclusiveSaysWhatIsNeeded: with too small a budget the answer is
// inconclusive with the further time that would decide it, and running
// that much more decides it.
func TestInconclusiveSaysWhatIsNeeded(t *testing.T) {
	for _, expect := range []Expect{ExpectFix, ExpectNoRegression} {
		o := simOptions(expect, 0.99)
		o.Budget = 45 * time.Second
		patched := 0.0
		if expect == ExpectNoRegression {
			o.Tolerance, patched = 60, 4.2
		}
		found := 0
		for seed := uint64(0); seed < 50; seed++ {
			row, _ := simulate(seed, o, 4.2, patched, 1.0/3)
			if row.Conclusion != Inconclusive || strings.Contains(row.Detail, "base did not fail") {
				continue
			}
			found++
			if row.Need <= 0 {
				t.Errorf("%s, seed %d: inconclusive with need %.2f min (%s)", expect, seed, row.Need, row.Detail)
			}
			if want := fmt.Sprintf("need %.1f more minutes", row.Need); !strings.Contains(row.Detail, want) {
				t.Errorf("%s: detail %q does not say %q", expect, row.Detail, want)
			}
		}
		if found == 0 {
			t.Errorf("%s: a 45 s budget was never inconclusive", expect)
		}
	}
}

// trialTester is an oracle for --exec: each run fails with its tree's
// probability, whatever its (random) length.
type trialTester struct {
	rng *rand.Rand
	p   map[*Row]float64
}

func (s *trialTester) prepare(context.Context, *Row, *Row, []string) error { return nil }

func (s *trialTester) run(_ context.Context, row *Row) (runResult, error) {
	r := runResult{outcome: pass, exposure: 1}
	if s.rng.Float64() < s.p[row] {
		r.outcome = fail
	}
	// From 5 to 50 ms, with a hiccup of up to 6 s now and then, as a
	// loaded machine runs a quick command.
	ms := math.Exp(math.Log(5) + s.rng.Float64()*math.Log(10))
	if s.rng.Float64() < 0.02 {
		ms = 6000 * s.rng.Float64()
	}
	r.wall = time.Duration(ms * float64(time.Millisecond))
	return r, nil
}

// TestTrials validates commands that only say pass or fail: run lengths
// must not matter, and the answers must be right.
func TestTrials(t *testing.T) {
	const trials = 60
	cases := []struct {
		name          string
		base, patched float64 // failure probabilities per run
		tolerance     float64
		expect        Expect
		want          string
		atLeast       float64
	}{
		{"always fails on the patched tree", 0, 1, 0, ExpectNoRegression, Regression, 1},
		{"never fails", 0, 0, 0, ExpectNoRegression, NoRegression, 1},
		{"same flaky test, 0.2 tolerance", 0.3, 0.3, 0.2, ExpectNoRegression, NoRegression, 0.9},
		{"fix of a flaky test", 0.5, 0, 0, ExpectFix, Fixes, 0.98},
		{"no fix of a flaky test", 0.5, 0.5, 0, ExpectFix, DoesNotFix, 0.98},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]int{}
			for i := 0; i < trials; i++ {
				o := simOptions(tc.expect, 0.99)
				o.Tolerance, o.Budget = tc.tolerance, 5*time.Minute
				rep := &Report{Base: "0123456789abcdef", BaseResult: &Row{Name: "base"}}
				target := &Row{Index: 1, Name: "patch"}
				st := &trialTester{rng: rand.New(rand.NewPCG(uint64(i), 7)), p: map[*Row]float64{rep.BaseResult: tc.base, target: tc.patched}}
				e := &engine{o: o, t: st, rep: rep, base: &arm{row: rep.BaseResult}, targets: []*arm{{row: target}}, trials: true}
				if err := e.run(context.Background()); err != nil {
					t.Fatal(err)
				}
				got[target.Conclusion]++
				wrong := target.Conclusion == Regression && tc.patched <= tc.base ||
					target.Conclusion == NoRegression && tc.patched > tc.base ||
					target.Conclusion == Fixes && tc.patched > 0
				if wrong {
					t.Errorf("trial %d: %s: %s", i, target.Conclusion, target.Detail)
				}
			}
			if float64(got[tc.want]) < tc.atLeast*trials {
				t.Errorf("conclusions %v, want %s in >= %.0f%%", got, tc.want, 100*tc.atLeast)
			}
			t.Logf("conclusions %v", got)
		})
	}
}
