package sim

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/bisect"
)

// maxFailures is the largest number of failures in n trials that is
// consistent (one-sided, at level 0.001) with a failure rate of rate: more
// than that and the rate is worse, with 99.9% confidence.
func maxFailures(n int, rate float64) int {
	// P(X > k) for X ~ Binomial(n, rate), summed from the top.
	tail := 0.0
	for k := n; k >= 0; k-- {
		lg1, _ := math.Lgamma(float64(n + 1))
		lg2, _ := math.Lgamma(float64(k + 1))
		lg3, _ := math.Lgamma(float64(n - k + 1))
		p := math.Exp(lg1 - lg2 - lg3 + float64(k)*math.Log(rate) + float64(n-k)*math.Log1p(-rate))
		if tail+p >= 0.001 {
			return k
		}
		tail += p
	}
	return 0
}

func strategies(t testing.TB, names ...string) []bisect.StrategySpec {
	var out []bisect.StrategySpec
	for _, n := range names {
		sp, err := bisect.ParseStrategy(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sp)
	}
	return out
}

func TestBound(t *testing.T) {
	// The bounds for N=1024: 13, 31, 88, 371 runs.
	for p, want := range map[float64]float64{0.9: 13, 0.5: 31, 0.2: 88, 0.05: 371} {
		if got := math.Round(Bound(1024, p)); got != want {
			t.Errorf("Bound(1024, %g) = %g, want %g", p, got, want)
		}
	}
}

func TestMaxFailures(t *testing.T) {
	if k := maxFailures(400, 0.01); k < 9 || k > 12 {
		t.Errorf("maxFailures(400, 0.01) = %d", k)
	}
}

// TestDefaultStrategy checks the default strategy at N=1024 with p unknown
// to it: it names the right commit in >= 99% of the trials (failures above
// what a 99% rate allows, at level 0.001, fail the test), its confidence is
// calibrated, and its mean runs stay within 2x of the information bound.
// The full-size run (400 trials) is TestFullSize.
func TestDefaultStrategy(t *testing.T) {
	tests := []struct {
		p      float64
		trials int
	}{{0.9, 200}, {0.5, 200}, {0.2, 120}, {0.05, 60}}
	for _, tc := range tests {
		rows, err := Run(context.Background(), Config{Commits: 1024, Trials: tc.trials, Ps: []float64{tc.p}, BuildCost: 2, Seed: 11,
			Strategies: strategies(t, "bayes", "git-bisect")})
		if err != nil {
			t.Fatal(err)
		}
		bayes, git := rows[0], rows[1]
		fails := int(math.Round((1 - bayes.Success) * float64(bayes.Trials)))
		if max := maxFailures(tc.trials, 0.01); fails > max {
			t.Errorf("p=%g: %d of %d wrong, more than the %d a 99%% success rate allows", tc.p, fails, tc.trials, max)
		}
		wrongConfident := int(math.Round((1 - bayes.ConfidentRight) * float64(bayes.Confident)))
		if max := maxFailures(bayes.Confident, 0.01); wrongConfident > max {
			t.Errorf("p=%g: %d of %d confident answers wrong: not calibrated", tc.p, wrongConfident, bayes.Confident)
		}
		if bayes.MeanRuns > 2*bayes.Bound {
			t.Errorf("p=%g: mean %.1f runs, more than twice the bound %.1f", tc.p, bayes.MeanRuns, bayes.Bound)
		}
		if tc.p <= 0.5 && git.Success > 0.5 {
			t.Errorf("p=%g: git bisect right %.0f%% of the time: the oracle is too easy", tc.p, 100*git.Success)
		}
		t.Logf("p=%g: success %.1f%%, %d confident %.1f%% right, %.1f runs (bound %.0f), %.1f builds; git bisect %.1f%%",
			tc.p, 100*bayes.Success, bayes.Confident, 100*bayes.ConfidentRight, bayes.MeanRuns, bayes.Bound, bayes.Builds, 100*git.Success)
	}
}

// TestOracleSplit: what not knowing p costs is split between the two
// decisions a search makes. Told p only for when to stop (oracle-stop), or
// only for which test to run (oracle-plan), the search needs fewer runs
// than bayes, which is told neither, and more than the oracle, told both
// (a decision that p did not matter to would cost the oracle's runs); each
// is right as often as a 99% rate allows.
func TestOracleSplit(t *testing.T) {
	const trials = 200
	rows, err := Run(context.Background(), Config{Commits: 1024, Trials: trials, Ps: []float64{0.5}, BuildCost: 2, Seed: 11,
		Strategies: strategies(t, "bayes", "oracle", bisect.OracleStop, bisect.OraclePlan)})
	if err != nil {
		t.Fatal(err)
	}
	bayes, oracle := rows[0], rows[1]
	for _, r := range rows[2:] {
		if !(oracle.MeanRuns < r.MeanRuns && r.MeanRuns < bayes.MeanRuns) {
			t.Errorf("%s: %.1f mean runs, not between the oracle's %.1f and bayes's %.1f", r.Strategy, r.MeanRuns, oracle.MeanRuns, bayes.MeanRuns)
		}
	}
	for _, r := range rows {
		fails := int(math.Round((1 - r.Success) * trials))
		if max := maxFailures(trials, 0.01); fails > max {
			t.Errorf("%s: %d of %d wrong, more than the %d a 99%% success rate allows", r.Strategy, fails, trials, max)
		}
		t.Logf("%s: success %.1f%%, %.1f runs (%.2fx the bound)", r.Strategy, 100*r.Success, r.MeanRuns, r.MeanRuns/r.Bound)
	}
}

// TestRobustness checks success >= 97% when bad commits fail at different
// rates, good commits fail spuriously, commits cannot be built, or the
// range holds no regression.
func TestRobustness(t *testing.T) {
	for _, sc := range []string{Varying, Spurious, Skips, None, Old} {
		for _, p := range []float64{0.5, 0.2} {
			const trials = 100
			rows, err := Run(context.Background(), Config{Commits: 1024, Trials: trials, Ps: []float64{p}, BuildCost: 2, Seed: 5,
				Scenario: sc, Strategies: strategies(t, "bayes")})
			if err != nil {
				t.Fatal(err)
			}
			r := rows[0]
			fails := int(math.Round((1 - r.Success) * trials))
			if max := maxFailures(trials, 0.03); fails > max {
				t.Errorf("%s p=%g: %d of %d wrong, more than the %d a 97%% success rate allows", sc, p, fails, trials, max)
			}
			t.Logf("%s p=%g: success %.0f%%, %.1f runs, %.1f builds", sc, p, 100*r.Success, r.MeanRuns, r.Builds)
		}
	}
}

// TestTimeMode runs time-based tests (a failure rate per minute, runs that
// stop at their first failure).
func TestTimeMode(t *testing.T) {
	const trials = 60
	rows, err := Run(context.Background(), Config{Commits: 512, Trials: trials, Rates: []float64{0.1}, BuildCost: 5, Overhead: 0.5, Seed: 3,
		Strategies: strategies(t, "bayes")})
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	fails := int(math.Round((1 - r.Success) * trials))
	if max := maxFailures(trials, 0.01); fails > max {
		t.Errorf("%d of %d wrong", fails, trials)
	}
	if r.Minutes <= 0 || r.Cost <= r.Minutes {
		t.Errorf("minutes %.1f, cost %.1f", r.Minutes, r.Cost)
	}
	t.Logf("rate 0.1/min: success %.0f%%, %.1f runs, %.0f test minutes, cost %.0f min", 100*r.Success, r.MeanRuns, r.Minutes, r.Cost)
}

// TestParallel checks multisection on the simulated wall clock: four
// workers find the culprit at least 0.6x4 = 2.4 times faster than one, and
// still rightly.
func TestParallel(t *testing.T) {
	const trials = 60
	rows, err := Sweep(context.Background(), Config{Commits: 1024, Trials: trials, Ps: []float64{0.5}, BuildCost: 2, Seed: 9,
		Strategies: strategies(t, "bayes")}, []int{1, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Parallel != 1 || rows[1].Parallel != 4 {
		t.Fatalf("rows %+v, want one with 1 worker, then one with 4", rows)
	}
	r := rows[1]
	fails := int(math.Round((1 - r.Success) * trials))
	if max := maxFailures(trials, 0.01); fails > max {
		t.Errorf("%d of %d wrong", fails, trials)
	}
	if rows[0].Wall != rows[0].Cost {
		t.Errorf("one worker: wall %.1f, cost %.1f: not the same", rows[0].Wall, rows[0].Cost)
	}
	if sp := SpeedUp(rows, r); sp < 2.4 {
		t.Errorf("speed-up %.2f with 4 workers (wall %.1f, one worker's %.1f), want >= 2.4", sp, r.Wall, rows[0].Wall)
	}
	t.Logf("parallel 4: %.1f runs, wall %.1f against %.1f: speed-up %.2f", r.MeanRuns, r.Wall, rows[0].Wall, SpeedUp(rows, r))
}

// TestTwoBugs bisects ranges with two bugs of different signatures: the
// culprit of the one bad failed with first is found >= 99% of the time.
func TestTwoBugs(t *testing.T) {
	for _, p := range []float64{0.9, 0.2} {
		const trials = 150
		rows, err := Run(context.Background(), Config{Commits: 1024, Trials: trials, Ps: []float64{p}, BuildCost: 2, Seed: 4,
			Scenario: TwoBugs, Strategies: strategies(t, "bayes")})
		if err != nil {
			t.Fatal(err)
		}
		r := rows[0]
		fails := int(math.Round((1 - r.Success) * trials))
		if max := maxFailures(trials, 0.01); fails > max {
			t.Errorf("p=%g: %d of %d wrong", p, fails, trials)
		}
		if r.Other <= 0 {
			t.Errorf("p=%g: no failure of the other bug", p)
		}
		t.Logf("two bugs p=%g: success %.1f%%, %.1f runs, %.1f failed with the other signature", p, 100*r.Success, r.MeanRuns, r.Other)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Commits: 0, Trials: 1},
		{Commits: 10, Trials: 0},
		{Commits: 10, Trials: 1, Ps: []float64{1.5}},
		{Commits: 10, Trials: 1, Rates: []float64{-1}},
		{Commits: 10, Trials: 1, Scenario: "weird"},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	for _, ks := range [][]int{{0}, {1, 65}, {-1}} {
		if _, err := Sweep(context.Background(), Config{Commits: 4, Trials: 1}, ks); err == nil || !strings.Contains(err.Error(), "give 1 to 64") {
			t.Errorf("--parallel %v: %v, want 1 to 64", ks, err)
		}
	}
}

// TestWriteJSON: one object a line, that reads back as the row.
func TestWriteJSON(t *testing.T) {
	rows := []Row{{Strategy: "bayes", Default: true, Scenario: Normal, P: 0.5, Trials: 3, Success: 1}, {Strategy: "git-bisect", Scenario: Normal, P: 0.5, Trials: 3}}
	var b strings.Builder
	if err := WriteJSON(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(rows), b.String())
	}
	for i, l := range lines {
		var r Row
		if err := json.Unmarshal([]byte(l), &r); err != nil || r != rows[i] {
			t.Errorf("line %d: %s reads back as %+v (%v)", i, l, r, err)
		}
	}
}

// TestFullSize is the benchmark at full size: kbisect sim --commits
// 1024 --trials 400. It runs only with KBISECT_SIM_FULL=1 (a few minutes).
func TestFullSize(t *testing.T) {
	if testing.Short() || os.Getenv("KBISECT_SIM_FULL") == "" {
		t.Skip("set KBISECT_SIM_FULL=1 to run the full-size simulation")
	}
	rows, err := Run(context.Background(), Config{Commits: 1024, Trials: 400, BuildCost: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	WriteTable(&b, rows)
	t.Log("\n" + b.String())
	research := map[float64]float64{0.9: 28, 0.5: 57, 0.2: 153, 0.05: 615}
	for _, r := range rows {
		if !r.Default {
			continue
		}
		if r.Success < 0.99 {
			t.Errorf("p=%g: success %.2f%% < 99%%", r.P, 100*r.Success)
		}
		if r.ConfidentRight < 0.99 {
			t.Errorf("p=%g: %.2f%% of confident answers right < 99%%", r.P, 100*r.ConfidentRight)
		}
		if r.MeanRuns > 2*r.Bound {
			t.Errorf("p=%g: mean runs %.1f > 2x bound %.1f", r.P, r.MeanRuns, r.Bound)
		}
		t.Logf("p=%g: %.1f runs vs %.0f for the research's integrating search", r.P, r.MeanRuns, research[r.P])
	}
	for _, sc := range []string{Varying, Spurious, Skips, None, Old} {
		rows, err := Run(context.Background(), Config{Commits: 1024, Trials: 400, BuildCost: 2, Seed: 1, Scenario: sc, Strategies: strategies(t, "bayes")})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Success < 0.97 {
				t.Errorf("%s p=%g: success %.2f%% < 97%%", sc, r.P, 100*r.Success)
			}
		}
		b.Reset()
		WriteTable(&b, rows)
		t.Log(sc + "\n" + b.String())
	}
}

// BenchmarkSim times kbisect sim --commits 1024 --trials 400 (all
// strategies, p in 0.9, 0.5, 0.2, 0.05) on all CPUs.
func BenchmarkSim(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), Config{Commits: 1024, Trials: 400, BuildCost: 2, Seed: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
}
