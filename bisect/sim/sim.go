// Package sim is the benchmark of kbisect's bisection strategies: a
// simulated oracle (N commits, a culprit drawn uniformly, bad commits that
// fail a run with probability p or at a rate per minute, a build cost) on
// which the strategies run from the same seeds, and the table that compares
// them.
package sim

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/kbisect/kbisect/bisect"
)

// Scenarios the oracle simulates.
const (
	Normal   = "normal"   // one rate for every bad commit
	Varying  = "varying"  // each bad commit fails at its own rate, uniform in [p/4, p]
	Spurious = "spurious" // good commits fail a run with probability 0.2% (or rate·0.2%·min)
	Skips    = "skips"    // 5% of the commits cannot be built
	None     = "none"     // no regression in the range: bad never fails
	Old      = "old"      // the bug predates good: every commit fails, good included
	// TwoBugs puts a second bug in the range, of another signature, at
	// its own culprit and with the same rate: the search bisects the
	// signature of the first failure of bad and must find that bug's
	// culprit.
	TwoBugs = "twobugs"
)

// Scenarios lists the scenario names.
var Scenarios = []string{Normal, Varying, Spurious, Skips, None, Old, TwoBugs}

// Config is a simulation.
type Config struct {
	Commits int       // commits in the range, bad included (good is one more)
	Trials  int       // bisections per strategy and rate
	Ps      []float64 // per-run detection probabilities (runs mode)
	// Rates are failure rates per minute (time mode; used instead of Ps
	// when set). RunMinutes is the shortest run the strategies may ask
	// for, Overhead the fixed cost of a run (boot) in minutes.
	Rates      []float64
	RunMinutes float64
	Overhead   float64
	// BuildCost is the cost of a build, in runs (runs mode) or minutes.
	BuildCost float64
	// Parallel is the number of tests in flight at once (multisection):
	// each worker asks for a test when it is free, and a simulated wall
	// clock runs builds (BuildCost) and runs (1, or Overhead plus the test
	// in time mode) on it.
	Parallel   int
	Strategies []bisect.StrategySpec
	Scenario   string
	Seed       uint64
	Confidence float64
	// Budget is the exposure within which bad must fail (runs or
	// minutes; 0: the default).
	Budget float64
	// SkipRate and SpuriousRate override the scenarios' defaults.
	SkipRate, SpuriousRate float64
	// PriorA, PriorB override the model's prior on p (0: defaults).
	PriorA, PriorB float64
	// Margin is the strategies' stopping margin (see bisect.Plan).
	Margin float64
	// FalseFail and RateSpread override the model's (see
	// bisect.ModelParams).
	FalseFail, RateSpread float64
	// Predates is the model's prior that the bug predates good.
	Predates float64
	// Workers is the number of goroutines (0: GOMAXPROCS).
	Workers int
	// MaxCost caps one bisection (0: 20000 runs or minutes).
	MaxCost float64
}

// ParseStrategies parses a comma-separated list of strategies (see
// bisect.ParseStrategy).
func ParseStrategies(list string) ([]bisect.StrategySpec, error) {
	var out []bisect.StrategySpec
	for _, s := range strings.Split(list, ",") {
		sp, err := bisect.ParseStrategy(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

// DefaultStrategies are the strategies compared by default: the default
// probabilistic one, git bisect (one run per commit), fixed repeats, a
// syzkaller-like rule and a bisect-kit-like Bayesian search.
func DefaultStrategies() []bisect.StrategySpec {
	var out []bisect.StrategySpec
	for _, s := range []string{"bayes", "git-bisect", "classic:5", "classic:20", "syzkaller", "bisectkit"} {
		sp, err := bisect.ParseStrategy(s)
		if err != nil {
			panic(err)
		}
		out = append(out, sp)
	}
	return out
}

func (c *Config) defaults() error {
	// Zero means the default; a value that cannot be meant is an error.
	if c.Confidence != 0 && !(c.Confidence > 0.5 && c.Confidence < 1) {
		return fmt.Errorf("--confidence %g: give a probability between 0.5 and 1, such as 0.99", c.Confidence)
	}
	for _, f := range []struct {
		flag string
		v    float64
		max  float64 // exclusive; 0: none
	}{
		{"run-minutes", c.RunMinutes, 0}, {"overhead", c.Overhead, 0}, {"build-cost", c.BuildCost, 0},
		{"budget", c.Budget, 0}, {"skip-rate", c.SkipRate, 1}, {"spurious-rate", c.SpuriousRate, 1},
		{"prior-a", c.PriorA, 0}, {"prior-b", c.PriorB, 0}, {"false-fail", c.FalseFail, 1},
		{"rate-spread", c.RateSpread, 0}, {"margin", c.Margin, 0}, {"predates", c.Predates, 1},
	} {
		if !(f.v >= 0) || math.IsInf(f.v, 1) || f.max > 0 && f.v >= f.max {
			if f.max > 0 {
				return fmt.Errorf("--%s %g: give a value from 0 to below %g", f.flag, f.v, f.max)
			}
			return fmt.Errorf("--%s %g: give a value of 0 (the default) or more", f.flag, f.v)
		}
	}
	if c.Parallel < 0 {
		return fmt.Errorf("--parallel %d: give 1 or more", c.Parallel)
	}
	if c.Workers < 0 {
		return fmt.Errorf("--workers %d: give 0 (GOMAXPROCS) or more", c.Workers)
	}
	if c.Commits < 1 {
		return fmt.Errorf("--commits must be at least 1, not %d", c.Commits)
	}
	if c.Trials < 1 {
		return fmt.Errorf("--trials must be at least 1, not %d", c.Trials)
	}
	if len(c.Ps) == 0 && len(c.Rates) == 0 {
		c.Ps = []float64{0.9, 0.5, 0.2, 0.05}
	}
	for _, p := range c.Ps {
		if !(p > 0 && p <= 1) {
			return fmt.Errorf("--p %g: a detection probability must be in (0, 1]", p)
		}
	}
	for _, r := range c.Rates {
		if !(r > 0) {
			return fmt.Errorf("--rate %g: a failure rate per minute must be > 0", r)
		}
	}
	if c.Scenario == "" {
		c.Scenario = Normal
	}
	ok := false
	for _, s := range Scenarios {
		ok = ok || s == c.Scenario
	}
	if !ok {
		return fmt.Errorf("unknown scenario %q: use one of %s", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if len(c.Strategies) == 0 {
		c.Strategies = DefaultStrategies()
	}
	if c.Parallel < 1 {
		c.Parallel = 1
	}
	if c.Confidence <= 0 {
		c.Confidence = 0.99
	}
	if c.RunMinutes <= 0 {
		c.RunMinutes = 1
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxCost <= 0 {
		c.MaxCost = 20000
	}
	if c.Budget <= 0 {
		c.Budget = 300 // runs, or minutes
	}
	if c.SkipRate <= 0 && c.Scenario == Skips {
		c.SkipRate = 0.05
	}
	if c.SpuriousRate <= 0 && c.Scenario == Spurious {
		c.SpuriousRate = 0.002
	}
	return nil
}

// trial is the world of one simulated bisection, shared by all strategies.
type trial struct {
	seed    uint64
	n       int // positions: 0 good, 1..commits, commits == bad
	culprit int // first bad position; n when there is none in the range
	rate    []float64
	skip    []bool
	false_  float64
	// culprit2 and rate2 are the second bug's (TwoBugs; culprit2 == n
	// otherwise): its failures have the signature "B", the first bug's "A".
	culprit2 int
	rate2    []float64
}

// result of one strategy on one trial.
type result struct {
	right      bool
	confident  bool
	confidence float64
	runs       int
	builds     int
	cost       float64
	wall       float64
	minutes    float64
	other      int
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func uniform(keys ...uint64) float64 {
	h := uint64(0x243f6a8885a308d3)
	for _, k := range keys {
		h = splitmix(h ^ k)
	}
	return float64(h>>11) / (1 << 53)
}

func (c *Config) newTrial(idx int, rate float64) *trial {
	seed := splitmix(c.Seed ^ splitmix(uint64(idx)+1) ^ math.Float64bits(rate))
	n := c.Commits + 1
	t := &trial{seed: seed, n: n, rate: make([]float64, n), skip: make([]bool, n)}
	t.culprit = 1 + int(uniform(seed, 1)*float64(c.Commits))
	switch c.Scenario {
	case None:
		t.culprit = n
	case Old:
		t.culprit = 0
	}
	for i := t.culprit; i < n; i++ {
		r := rate
		if c.Scenario == Varying {
			r = rate * (0.25 + 0.75*uniform(seed, 2, uint64(i)))
		}
		t.rate[i] = r
	}
	for i := 1; i < n-1; i++ {
		t.skip[i] = c.SkipRate > 0 && uniform(seed, 3, uint64(i)) < c.SkipRate
	}
	t.false_ = c.SpuriousRate
	t.culprit2, t.rate2 = n, make([]float64, n)
	if c.Scenario == TwoBugs {
		t.culprit2 = 1 + int(uniform(seed, 7)*float64(c.Commits))
		for i := t.culprit2; i < n; i++ {
			t.rate2[i] = rate
		}
	}
	return t
}

// outcome of the k-th run at pos: failed, with which signature ("A" the
// first bug, "B" the second), and the exposure used.
func (t *trial) run(timeMode bool, pos, k int, exposure float64) (bool, string, float64) {
	r := t.rate[pos]
	if pos < t.culprit {
		r = t.false_ // spurious failures on good commits
	}
	r2 := t.rate2[pos]
	u := uniform(t.seed, 4, uint64(pos), uint64(k))
	u2 := uniform(t.seed, 5, uint64(pos), uint64(k))
	if timeMode {
		// Each bug fails at its own rate per minute; the run stops at
		// the first failure.
		tf, sig := math.Inf(1), ""
		if r > 0 {
			tf, sig = -math.Log(1-u)/r, "A"
		}
		if r2 > 0 {
			if t2 := -math.Log(1-u2) / r2; t2 < tf {
				tf, sig = t2, "B"
			}
		}
		if tf < exposure {
			return true, sig, tf
		}
		return false, "", exposure
	}
	a, b := u < r, u2 < r2
	if a && b {
		// Both would fail the run: which shows first is a coin toss.
		a = uniform(t.seed, 6, uint64(pos), uint64(k)) < 0.5
		b = !a
	}
	switch {
	case a:
		return true, "A", 1
	case b:
		return true, "B", 1
	}
	return false, "", 1
}

// inflight is a test under way on the simulated wall clock.
type inflight struct {
	req    bisect.Request
	end    float64 // wall time it completes
	failed bool
	sig    string
	used   float64 // exposure used
	cost   float64 // its cost, build included
	build  bool    // it builds the commit
	skip   bool    // the build fails
}

func (c *Config) play(t *trial, sp bisect.StrategySpec, timeMode bool) result {
	plan := bisect.Plan{
		Strategy:       sp,
		Unit:           bisect.UnitRuns,
		Confidence:     c.Confidence,
		Costs:          bisect.Costs{Build: c.BuildCost, Run: 1},
		EndpointBudget: c.Budget,
		Model:          bisect.ModelParams{PriorA: c.PriorA, PriorB: c.PriorB, FalseFail: c.FalseFail, RateSpread: c.RateSpread, Predates: c.Predates},
		MaxCost:        c.MaxCost,
		Margin:         c.Margin,
	}
	if timeMode {
		plan.Unit = bisect.UnitTime
		plan.Costs = bisect.Costs{Build: c.BuildCost, Run: c.Overhead}
		plan.RunBase = c.RunMinutes
		plan.RunMax = 16 * c.RunMinutes
	}
	if sp.SimOnly() {
		// The oracle knows the rate of the bad commits (oracle-stop and
		// oracle-plan use it for one half of their decisions).
		plan.Model.KnownRate = t.rate[t.n-1]
	}
	core := bisect.NewCore(t.n, plan)
	var res result
	counts := make(map[int]int)
	built := make(map[int]float64) // wall time each build is (or was) done
	var running []inflight
	var concl *bisect.Conclusion
	now := 0.0
	for {
		// Free workers ask for tests.
		for len(running) < c.Parallel {
			pending := make([]bisect.Request, len(running))
			for i, f := range running {
				pending[i] = f.req
			}
			req, cc := core.Next(pending)
			if cc != nil {
				// The tests still in flight are cancelled, as the
				// engine does: the conclusion holds on the runs seen.
				concl = cc
				break
			}
			if req.Pos < 0 {
				break
			}
			running = append(running, c.start(t, plan, req, now, built, counts, timeMode))
		}
		if concl != nil {
			break
		}
		if len(running) == 0 {
			panic("simulator: strategy asked for nothing and concluded nothing")
		}
		// The first test to complete.
		first := 0
		for i, f := range running {
			if f.end < running[first].end {
				first = i
			}
		}
		f := running[first]
		running = append(running[:first], running[first+1:]...)
		now = f.end
		res.cost += f.cost
		if f.skip {
			res.builds++
			core.Search.MarkSkip(f.req.Pos)
			core.AddCost(f.cost)
			continue
		}
		if f.build {
			res.builds++
		}
		core.Search.MarkBuilt(f.req.Pos)
		res.runs++
		if timeMode {
			res.minutes += f.used
		}
		if !core.Observe(f.req.Pos, f.failed, f.sig, f.used, f.cost) {
			res.other++
		}
	}
	res.wall = now
	res.confidence = concl.Confidence
	res.confident = concl.Status == bisect.StatusFound && concl.Confidence >= c.Confidence
	// The culprit to find is the bug of the signature bisected.
	culprit := t.culprit
	if sig, _ := core.Target(); sig == "B" {
		culprit = t.culprit2
	}
	switch {
	case culprit == 0 || culprit == t.n:
		res.right = concl.Status == bisect.StatusNoRegression
	case concl.Status == bisect.StatusFound:
		res.right = concl.Pos == culprit
	case concl.Status == bisect.StatusInconclusive && concl.Lo <= culprit && culprit <= concl.Hi && concl.Confidence >= c.Confidence:
		// Right when the candidates are the culprit and untestable
		// commits only: nothing smaller could be said.
		extra := 0
		for i := concl.Lo; i < concl.Hi; i++ {
			if !t.skip[i] {
				extra++
			}
		}
		res.right = extra == 0
	}
	return res
}

// start begins the test req at wall time now: it waits for a build of the
// commit under way, or builds it, then runs; the outcome is drawn now.
func (c *Config) start(t *trial, plan bisect.Plan, req bisect.Request, now float64, built map[int]float64, counts map[int]int, timeMode bool) inflight {
	f := inflight{req: req}
	ready := now
	if done, ok := built[req.Pos]; ok {
		ready = math.Max(now, done)
	} else {
		ready = now + plan.Costs.Build
		built[req.Pos] = ready
		f.build, f.cost = true, plan.Costs.Build
		if t.skip[req.Pos] {
			f.skip, f.end = true, ready
			return f
		}
	}
	k := counts[req.Pos]
	counts[req.Pos] = k + 1
	f.failed, f.sig, f.used = t.run(timeMode, req.Pos, k, req.Exposure)
	run := 1.0
	if timeMode {
		run = plan.Costs.Run + f.used
	}
	f.cost += run
	f.end = ready + run
	return f
}

// Run runs the simulation and returns one row per rate and strategy.
func Run(ctx context.Context, c Config) ([]Row, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	timeMode := len(c.Rates) > 0
	rates := c.Ps
	if timeMode {
		rates = c.Rates
	}
	type job struct{ ri, trial int }
	ns := len(c.Strategies)
	results := make([][]result, len(rates)*ns)
	for i := range results {
		results[i] = make([]result, c.Trials)
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < c.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				t := c.newTrial(j.trial, rates[j.ri])
				for si, sp := range c.Strategies {
					results[j.ri*ns+si][j.trial] = c.play(t, sp, timeMode)
				}
			}
		}()
	}
	var err error
feed:
	for ri := range rates {
		for i := 0; i < c.Trials; i++ {
			select {
			case jobs <- job{ri, i}:
			case <-ctx.Done():
				err = ctx.Err()
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for ri, r := range rates {
		for si, sp := range c.Strategies {
			rows = append(rows, c.row(sp, r, timeMode, results[ri*ns+si]))
		}
	}
	return rows, nil
}

// Sweep runs the simulation once for each number of workers in parallel
// (1 to 64 each; c.Parallel is ignored) and returns the rows of all, in
// that order: with several, WriteTable adds the wall time and speed-up.
func Sweep(ctx context.Context, c Config, parallel []int) ([]Row, error) {
	var rows []Row
	for _, k := range parallel {
		if k < 1 || k > 64 {
			return nil, fmt.Errorf("--parallel %d: give 1 to 64", k)
		}
		c.Parallel = k
		r, err := Run(ctx, c)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}
