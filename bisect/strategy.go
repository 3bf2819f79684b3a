package bisect

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Statuses of a finished (or stopped) bisection.
const (
	StatusFound        = "found"         // one commit holds the confidence asked for
	StatusNoRegression = "no-regression" // bad does not fail, or good fails too
	StatusInconclusive = "inconclusive"  // budget spent, or skips hide the culprit
	StatusError        = "error"         // infrastructure errors dominate
)

// Conclusion is the answer of a search, in positions.
type Conclusion struct {
	Status string
	// Pos is the first bad position named (StatusFound), or the most
	// probable one otherwise.
	Pos int
	// Lo..Hi are the candidate positions when skips leave several (Lo == Hi
	// == Pos otherwise).
	Lo, Hi int
	// Confidence is the posterior probability of Pos (or of Lo..Hi).
	Confidence float64
	Reason     string
}

// StrategySpec names a strategy and its parameter, as in "bayes",
// "classic", "classic:5" (5 passes make a commit good), "syzkaller" (10
// runs per commit, 2 failures make it bad), "bisectkit" (a Bayesian search
// that plugs in an estimate of p, and ignores build cost), "oracle" (knows
// the rate; simulator only). "oracle-stop" and "oracle-plan" (simulator
// only) split what not knowing the rate costs: the first chooses its tests
// as bayes does and stops on the posterior that knows the rate, the second
// chooses them as the oracle does and stops as bayes does.
type StrategySpec struct {
	Name    string
	Repeats int
	// Threshold is the number of failures that make a commit bad (classic
	// strategies).
	Threshold int
	// RunAll runs all Repeats runs even after a failure (syzkaller).
	RunAll bool
}

// Strategies lists the strategy names ParseStrategy accepts.
var Strategies = []string{"bayes", "classic[:K]", "syzkaller", "bisectkit"}

// ParseStrategy parses a strategy name.
func ParseStrategy(s string) (StrategySpec, error) {
	name, arg, _ := strings.Cut(s, ":")
	sp := StrategySpec{Name: name}
	switch name {
	case "bayes", "bisectkit", Oracle, OracleStop, OraclePlan:
		if arg != "" {
			return sp, fmt.Errorf("strategy %q takes no parameter", s)
		}
	case "classic", "git-bisect":
		sp.Name = "classic"
		sp.Repeats, sp.Threshold = 1, 1
		if arg != "" {
			k, err := strconv.Atoi(arg)
			if err != nil || k < 1 {
				return sp, fmt.Errorf("strategy %q: the repeat count must be a positive integer, as in classic:5", s)
			}
			sp.Repeats = k
		}
	case "syzkaller":
		sp.Repeats, sp.Threshold, sp.RunAll = 10, 2, true
	default:
		return sp, fmt.Errorf("unknown strategy %q: use one of %s", s, strings.Join(Strategies, ", "))
	}
	return sp, nil
}

// The simulator's strategies that are told the rate (see StrategySpec).
const (
	Oracle     = "oracle"
	OracleStop = "oracle-stop"
	OraclePlan = "oracle-plan"
)

// SimOnly reports whether the strategy needs to be told the rate, which
// only the simulator knows.
func (sp StrategySpec) SimOnly() bool {
	return sp.Name == Oracle || sp.Name == OracleStop || sp.Name == OraclePlan
}

// String returns the spec in the form ParseStrategy accepts.
func (sp StrategySpec) String() string {
	switch sp.Name {
	case "classic":
		if sp.Repeats <= 1 {
			return "git-bisect"
		}
		return fmt.Sprintf("classic:%d", sp.Repeats)
	}
	return sp.Name
}

// Plan is the configuration of a search, in the unit of the search.
type Plan struct {
	Strategy   StrategySpec
	Unit       Unit
	Confidence float64
	Model      ModelParams
	Costs      Costs
	// EndpointBudget is the exposure within which bad must fail (runs,
	// or minutes).
	EndpointBudget float64
	// RunBase and RunMax bound the length of one run in minutes (time mode).
	RunBase, RunMax float64
	// MaxCost stops the search (inconclusive) once this much has been spent
	// (0: no limit), in runs or minutes.
	MaxCost float64
	// Margin (0 < Margin <= 1, default 0.5) scales the error the search
	// allows at low detection rates: it stops when the posterior of one
	// commit reaches 1 - Margin·(1-Confidence) (see Core.target).
	Margin float64
	// Signature, a regular expression, says which failures are the bug:
	// those whose signature it matches. Empty: the signature of the first
	// failure of bad. Failures of other signatures count as neither pass
	// nor fail (see Core.Observe).
	Signature string
}

func (p *Plan) defaults() {
	if p.Confidence <= 0 || p.Confidence >= 1 {
		p.Confidence = 0.99
	}
	if p.Margin <= 0 || p.Margin > 1 {
		p.Margin = defaultMargin
	}
	if p.Unit == "" {
		p.Unit = UnitRuns
	}
	if p.Strategy.Name == "" {
		p.Strategy = StrategySpec{Name: "bayes"}
	}
	if p.Costs.Run <= 0 && p.Unit == UnitRuns {
		p.Costs.Run = 1
	}
	if p.EndpointBudget <= 0 {
		if p.Unit == UnitRuns {
			p.EndpointBudget = defaultEndpointRun
		} else {
			p.EndpointBudget = 30
		}
	}
	if p.RunBase <= 0 {
		p.RunBase = 1
	}
	if p.RunMax < p.RunBase {
		p.RunMax = 16 * p.RunBase
	}
}

// Core drives a search: it confirms the bad endpoint, asks the strategy for
// the next test, and concludes. It does no I/O; the engine and the
// simulator feed it outcomes.
type Core struct {
	Plan   Plan
	Search *Search
	opts   []float64
	spent  float64
	// sigRe is Plan.Signature compiled; targetSig the signature bisected
	// once known (the first failure that matched).
	sigRe       *regexp.Regexp
	targetSig   string
	targetKnown bool
}

// NewCore returns a Core over n positions.
func NewCore(n int, plan Plan) *Core {
	plan.defaults()
	mp := plan.Model
	if plan.Unit == UnitTime && mp.PriorB <= 0 {
		// Half the shortest run of pseudo-exposure: nearly scale-free, in
		// the scale of the test.
		mp.PriorB = plan.RunBase / 2
	}
	if plan.Strategy.Name == "bisectkit" {
		mp.PlugIn = true
	}
	var known *Search
	if name := plan.Strategy.Name; (name == OracleStop || name == OraclePlan) && mp.KnownRate > 0 {
		// The search does not know the rate; its shadow, fed the same
		// runs, does (see Search.known).
		known = NewSearch(n, plan.Unit, mp)
		mp.KnownRate = 0
	}
	c := &Core{Plan: plan, Search: NewSearch(n, plan.Unit, mp)}
	c.Search.known = known
	c.opts = exposureOptions(plan.Unit, plan.RunBase, plan.RunMax)
	if plan.Signature != "" {
		// Options.Validate has checked it; an invalid one matches all.
		c.sigRe, _ = regexp.Compile(plan.Signature)
	}
	return c
}

// Record adds the outcome of one run at pos, with its exposure (1 run, or
// minutes of test) and cost (in the same unit, builds included).
func (c *Core) Record(pos int, failed bool, exposure, cost float64) {
	c.Search.Record(pos, failed, exposure)
	c.spent += cost
}

// Observe adds the outcome of one run at pos as Record does, with the
// signature of its failure. A failure of another signature than the one
// bisected counts as neither pass nor fail, only as a cost: it must not
// steer the search towards another bug. Observe reports whether the run
// counted.
func (c *Core) Observe(pos int, failed bool, sig string, exposure, cost float64) bool {
	if failed && !c.Matches(sig) {
		c.Search.RecordOther(pos, exposure)
		c.spent += cost
		return false
	}
	if failed && sig != "" && !c.targetKnown {
		c.targetSig, c.targetKnown = sig, true
	}
	c.Record(pos, failed, exposure, cost)
	return true
}

// Matches reports whether a failure of signature sig is the bug bisected:
// sig matches Plan.Signature, or without one, equals the signature of the
// first signed failure (any signature matches before it). A failure
// without a signature (a journal of an older kbisect, a test that names
// none) cannot be told apart, so it counts, as in git bisect.
func (c *Core) Matches(sig string) bool {
	if sig == "" {
		return true
	}
	if c.sigRe != nil {
		return c.sigRe.MatchString(sig)
	}
	return !c.targetKnown || sig == c.targetSig
}

// Target returns the signature of the first failure that counted, and
// whether there was one.
func (c *Core) Target() (string, bool) { return c.targetSig, c.targetKnown }

// AddCost adds a cost that brought no run (a build that failed).
func (c *Core) AddCost(cost float64) { c.spent += cost }

// Spent is the total cost recorded.
func (c *Core) Spent() float64 { return c.spent }

func (c *Core) bad() int { return c.Search.Len() - 1 }

// Next returns the next test, or a conclusion. pending are the tests in
// flight (for --parallel).
func (c *Core) Next(pending []Request) (Request, *Conclusion) {
	s := c.Search
	bad := c.bad()
	if _, f, e := s.Stat(bad); f == 0 {
		if s.st[bad].skip {
			return Request{}, &Conclusion{Status: StatusInconclusive, Pos: bad, Lo: bad, Hi: bad,
				Reason: "bad cannot be tested (build or boot failure)"}
		}
		// Runs of bad that failed with another signature spend its
		// budget too.
		_, oe := s.Other(bad)
		e += oe
		var inflight float64
		for _, p := range pending {
			if p.Pos == bad {
				inflight += p.Exposure
			}
		}
		if e >= c.Plan.EndpointBudget {
			return Request{}, &Conclusion{Status: StatusNoRegression, Pos: bad, Lo: bad, Hi: bad,
				Reason: c.endpointReason(e)}
		}
		runs, _, _ := s.Stat(bad)
		other, _ := s.Other(bad)
		if !(runs+other == 0 && inflight > 0) {
			// Requests are minutes of test (time mode), the budget
			// exposure.
			y := c.Plan.Costs.yield()
			if e+inflight*y >= c.Plan.EndpointBudget {
				return Request{Pos: -1}, nil // wait for the runs in flight
			}
			x := 1.0
			if c.Plan.Unit == UnitTime {
				x = math.Min(c.Plan.RunMax, (c.Plan.EndpointBudget-e-inflight*y)/y)
			}
			return Request{Pos: bad, Exposure: x}, nil
		}
		// Wall time: while the first run of bad is under way, the other
		// workers (--parallel) start the search as if it had failed, as
		// bad does more often than not; if it passes, they all run bad.
	}
	if c.Plan.MaxCost > 0 && c.spent >= c.Plan.MaxCost {
		pos, p := s.Best()
		return Request{}, &Conclusion{Status: StatusInconclusive, Pos: pos, Lo: pos, Hi: pos, Confidence: p,
			Reason: fmt.Sprintf("budget spent (%s) before any commit reached %.3g", c.fmtCost(c.spent), c.Plan.Confidence)}
	}
	if c.Plan.Strategy.Name == "classic" || c.Plan.Strategy.Name == "syzkaller" {
		return c.nextClassic(pending)
	}
	// stop is the posterior the search stops on, planner the one it
	// chooses tests on: the search's own but for the simulator's
	// oracle-stop and oracle-plan.
	stop, planner := s, s
	switch {
	case s.known == nil:
	case c.Plan.Strategy.Name == OracleStop:
		stop = s.known
	case c.Plan.Strategy.Name == OraclePlan:
		planner = s.known
	}
	pos, p := stop.Best()
	target := c.target(stop)
	if p >= target {
		return Request{}, c.conclude(pos, p)
	}
	if lo, hi, mass := stop.credibleRun(target); mass >= target && lo < hi && s.untestable(lo, hi-1) {
		// The culprit is one of lo..hi and nothing can split them: all but
		// the last are untestable.
		return Request{}, &Conclusion{Status: StatusInconclusive, Pos: hi, Lo: lo, Hi: hi, Confidence: mass,
			Reason: fmt.Sprintf("the first bad commit is one of %d commits that untestable commits keep apart", hi-lo+1)}
	}
	costs := c.Plan.Costs
	if c.Plan.Strategy.Name == "bisectkit" {
		costs.Build = 0
	}
	req, ok := planner.plan(costs, c.opts, pending)
	if !ok && planner != s {
		// Told the rate, the oracle's planner may see nothing left to
		// learn before the search that stops without it is sure.
		req, ok = s.plan(costs, c.opts, pending)
	}
	if !ok {
		if len(pending) > 0 {
			return Request{Pos: -1}, nil
		}
		lo, hi, mass := stop.credibleRun(target)
		return Request{}, &Conclusion{Status: StatusInconclusive, Pos: pos, Lo: lo, Hi: hi, Confidence: mass,
			Reason: "no commit left that can be tested: the first bad commit is one of the candidates (untestable commits in between: they do not build or boot, or fail with another signature)"}
	}
	if c.Plan.Unit == UnitRuns {
		// Runs are done one at a time; the plan is made again after each.
		req.Exposure = 1
	}
	return req, nil
}

// target is the posterior probability the search stops at; s is the search
// whose rate estimate sets the margin. A posterior that integrates over the
// unknown rate is calibrated on average over its prior, not at every
// rate: at a fixed rate of 0.2 or 0.5 per run, 98.9% of the searches that
// stopped at 0.99 were right (2,000 simulated searches each). At high rates every run moves the posterior far and the search
// overshoots the threshold (100% right at 0.9); at lower rates it creeps up
// to it. So the error allowed is Margin·(1-Confidence) when the estimated
// rate per run is 0.3 or less, growing to all of 1-Confidence at 0.8 and
// above. In time mode the rate per run is that of a run of RunBase minutes
// of test at the estimated rate per minute of exposure, 1-exp(-λ·RunBase·
// Yield) (the kernel pipeline's exposure is traffic): there the search
// stayed calibrated with all of 1-Confidence at every rate `kbisect sim
// --commits 64 --rate 2,1,0.3,0.1 --run-minutes 1 --overhead 0.1
// --build-cost 0.5 --margin 1` tried (99.6-100% right, mean confidence
// 0.991-0.993, 1,000 searches each), so the same rule is on the safe side.
// A demo that ran 23 runs to 0.996 under Margin would have stopped at its
// 21st, at 0.993.
func (c *Core) target(s *Search) float64 {
	m := c.Plan.Margin
	r := s.RateEstimate()
	if c.Plan.Unit == UnitTime {
		r = -math.Expm1(-r * c.Plan.RunBase * c.Plan.Costs.yield())
	}
	m += (1 - m) * math.Min(1, math.Max(0, (r-0.3)/0.5))
	return 1 - m*(1-c.Plan.Confidence)
}

func (c *Core) conclude(pos int, p float64) *Conclusion {
	if pos == 0 {
		runs, f, _ := c.Search.Stat(0)
		return &Conclusion{Status: StatusNoRegression, Pos: 0, Lo: 0, Hi: 0, Confidence: p,
			Reason: fmt.Sprintf("good fails too (%d of %d runs): the bug predates good; give an older --good", int(f), runs)}
	}
	return &Conclusion{Status: StatusFound, Pos: pos, Lo: pos, Hi: pos, Confidence: p}
}

func (c *Core) fmtCost(x float64) string {
	if c.Plan.Unit == UnitRuns {
		return fmt.Sprintf("%.0f runs", x)
	}
	return fmt.Sprintf("%.1f min", x)
}

// endpointReason explains a bad commit that did not fail: with exposure e
// and no failure, the rate is below -ln(0.05)/e at 95% confidence.
func (c *Core) endpointReason(e float64) string {
	what := "bad did not fail"
	if o, _ := c.Search.Other(c.bad()); o > 0 {
		what = fmt.Sprintf("bad did not fail with the signature bisected (%d runs failed with others)", o)
	}
	if c.Plan.Unit == UnitRuns {
		bound := 1 - math.Pow(0.05, 1/e)
		return fmt.Sprintf("%s in %.0f runs: its failure probability per run is below %.2g%% (95%% confidence); raise --budget, or check the test", what, e, 100*bound)
	}
	perHour := -math.Log(0.05) / e * 60
	return fmt.Sprintf("%s in %s of testing: its failure rate is below %.2g per hour (95%% confidence); raise --budget, or check the test", what, fmtMinutes(e), perHour)
}

func fmtMinutes(m float64) string {
	switch {
	case m >= 120:
		return fmt.Sprintf("%.1f h", m/60)
	case m >= 1:
		return fmt.Sprintf("%.0f min", m)
	default:
		return fmt.Sprintf("%.0f s", m*60)
	}
}

// nextClassic is git bisect with repeats: a commit is bad once it fails
// Threshold times, good after Repeats runs without that; the next commit is
// the middle of the remaining range, moving to a neighbour when it cannot
// be tested.
func (c *Core) nextClassic(pending []Request) (Request, *Conclusion) {
	s := c.Search
	sp := c.Plan.Strategy
	n := s.Len()
	isBad := func(i int) bool {
		runs, f, _ := s.Stat(i)
		return int(f) >= sp.Threshold && (!sp.RunAll || runs >= sp.Repeats)
	}
	isGood := func(i int) bool {
		runs, f, _ := s.Stat(i)
		return runs >= sp.Repeats && int(f) < sp.Threshold
	}
	hi := n - 1
	for i := 1; i < n-1; i++ {
		if isBad(i) {
			hi = i
			break
		}
	}
	lo := 0
	for i := hi - 1; i > 0; i-- {
		if isGood(i) {
			lo = i
			break
		}
	}
	// A commit still being decided is finished first.
	for i := lo + 1; i < hi; i++ {
		if runs, _, _ := s.Stat(i); runs > 0 && !isGood(i) && !isBad(i) && !s.Skipped(i) {
			return c.classicReq(i, pending), nil
		}
	}
	if hi-lo <= 1 {
		p := s.Prob(hi)
		return Request{}, &Conclusion{Status: StatusFound, Pos: hi, Lo: hi, Hi: hi, Confidence: p}
	}
	mid := (lo + hi) / 2
	for d := 0; d < hi-lo; d++ {
		for _, y := range [2]int{mid - d, mid + d} {
			if y > lo && y < hi && !s.Skipped(y) {
				return c.classicReq(y, pending), nil
			}
		}
	}
	var m float64
	for i := lo + 1; i <= hi; i++ {
		m += s.Prob(i)
	}
	return Request{}, &Conclusion{Status: StatusInconclusive, Pos: hi, Lo: lo + 1, Hi: hi, Confidence: m,
		Reason: "only untestable commits are left: the first bad commit is one of the candidates"}
}

func (c *Core) classicReq(pos int, pending []Request) Request {
	runs, _, _ := c.Search.Stat(pos)
	inflight := 0
	for _, p := range pending {
		if p.Pos == pos {
			inflight++
		}
	}
	if runs+inflight >= c.Plan.Strategy.Repeats {
		return Request{Pos: -1} // wait for the runs in flight
	}
	e := 1.0
	if c.Plan.Unit == UnitTime {
		e = c.Plan.RunBase
	}
	return Request{Pos: pos, Exposure: e}
}

// Top returns the k most probable positions with their probabilities.
func (c *Core) Top(k int) []PosProb {
	post := c.Search.Posterior()
	idx := make([]int, len(post))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return post[idx[a]] > post[idx[b]] })
	if k > len(idx) {
		k = len(idx)
	}
	out := make([]PosProb, k)
	for i := 0; i < k; i++ {
		out[i] = PosProb{Pos: idx[i], P: post[idx[i]]}
	}
	return out
}

// PosProb is a position with its posterior probability.
type PosProb struct {
	Pos int
	P   float64
}
