package bisect

import (
	"math"
	"sort"
)

// Costs are what tests cost, in the unit of the search: one run (runs
// mode) or one minute of test (time mode).
type Costs struct {
	// Build is the cost of building a commit that has no build yet.
	Build float64
	// Run is the fixed cost of starting one run beyond its exposure: 1 in
	// runs mode (a run costs one run), the boot and set-up time in minutes
	// in time mode.
	Run float64
	// Yield is the exposure one minute of test gives (time mode; 0 means
	// 1): the kernel pipeline counts exposure in traffic, so that a run
	// of a minute at twice the reference throughput exposes two.
	Yield float64
}

// yield is c.Yield, 1 when unset.
func (c Costs) yield() float64 {
	if c.Yield <= 0 {
		return 1
	}
	return c.Yield
}

// Request asks for a test of position Pos with exposure Exposure: the
// number of runs planned there (runs mode; they are done one at a time and
// the plan is made again after each), or the length of the run in minutes
// (time mode, the run stopping at its first failure).
type Request struct {
	Pos      int
	Exposure float64
	// Gain is the expected information about the first bad position, in
	// bits, and Cost the expected cost of the request.
	Gain, Cost float64
}

// exposureOptions returns the exposures the planner considers.
func exposureOptions(u Unit, base, max float64) []float64 {
	if u == UnitRuns {
		return []float64{1, 2, 4, 8, 16, 32, 64}
	}
	if base <= 0 {
		base = 1
	}
	if max < base {
		max = base
	}
	var out []float64
	for e := base; e < max*1.0001; e *= 2 {
		out = append(out, e)
	}
	if out[len(out)-1] < max*0.999 {
		out = append(out, max)
	}
	return out
}

func h2(p float64) float64 {
	if p <= 0 || p >= 1 {
		return 0
	}
	return -(p*math.Log2(p) + (1-p)*math.Log2(1-p))
}

// quantiles at which untested candidates are placed, as cumulative
// posterior mass from the good end.
var planQuantiles = []float64{0.005, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
	0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.84, 0.88, 0.92, 0.95, 0.98, 0.995}

// candidates returns the positions worth evaluating: every tested position
// that can still be tested, and untested ones at quantiles of the
// posterior and around the most probable position.
func (s *Search) candidates() []int {
	s.update()
	n := len(s.prior)
	seen := make(map[int]bool, 64)
	var out []int
	add := func(x int) {
		if x < 0 || x >= n || seen[x] || s.st[x].untestable() {
			return
		}
		seen[x] = true
		out = append(out, x)
	}
	for _, t := range s.tested {
		add(t)
	}
	// nearest testable untested position to x inside x's segment.
	near := func(x int) {
		j := s.segOf(x)
		lo, hi := s.segLo[j], s.segHi[j]
		for d := 0; d <= hi-lo; d++ {
			found := false
			for _, y := range [2]int{x - d, x + d} {
				if y >= lo && y <= hi && s.st[y].runs == 0 && !s.st[y].untestable() {
					add(y)
					found = true
				}
			}
			if found {
				return
			}
		}
	}
	for _, q := range planQuantiles {
		// first segment whose cumulative mass reaches q
		j := sort.Search(len(s.segM), func(j int) bool { return s.cumM[j+1] >= q })
		if j >= len(s.segM) {
			j = len(s.segM) - 1
		}
		w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
		frac := 0.0
		if s.segM[j] > 0 {
			frac = (q - s.cumM[j]) / s.segM[j]
		}
		target := s.cum[s.segLo[j]] + frac*w
		x := sort.SearchFloat64s(s.cum, target) - 1
		if x < s.segLo[j] {
			x = s.segLo[j]
		}
		if x > s.segHi[j] {
			x = s.segHi[j]
		}
		near(x)
	}
	near(s.best)
	if s.best > 0 {
		near(s.best - 1)
	}
	return out
}

// plan returns the most informative test per unit of cost, given the
// requests already in flight. ok is false when no test can tell anything
// more (all remaining uncertainty sits on untestable positions).
func (s *Search) plan(c Costs, opts []float64, pending []Request) (Request, bool) {
	s.update()
	cands := s.candidates()
	if len(pending) > 0 {
		return s.planJoint(c, opts, pending, cands)
	}

	ns := len(s.segM)
	no := len(opts)
	// Per segment and option: probability that a bad commit passes.
	pb := make([]float64, ns*no)
	A := make([]float64, (ns+1)*no) // prefix Σ M πb
	H := make([]float64, (ns+1)*no) // prefix Σ M h(πb)
	// The options are minutes of test (time mode); the model counts
	// their exposure.
	y := c.yield()
	for j := 0; j < ns; j++ {
		for o, e := range opts {
			v := s.model.passBad(s.segF[j], s.segE[j], e*y)
			pb[j*no+o] = v
			A[(j+1)*no+o] = A[j*no+o] + s.segM[j]*v
			H[(j+1)*no+o] = H[j*no+o] + s.segM[j]*h2(v)
		}
	}
	pg := make([]float64, no)
	hg := make([]float64, no)
	for o, e := range opts {
		pg[o] = s.model.passGood(e * y)
		hg[o] = h2(pg[o])
	}
	best := Request{Pos: -1}
	bestScore := 0.0
	pp := make([]float64, no)
	gain := make([]float64, no)
	for _, x := range cands {
		k := s.segOf(x)
		w := s.cum[s.segHi[k]+1] - s.cum[s.segLo[k]]
		f := 1.0
		if x < s.segHi[k] && w > 0 {
			f = (s.cum[x+1] - s.cum[s.segLo[k]]) / w
		}
		mk := s.segM[k]
		bm := s.cumM[k] + f*mk
		for o := range opts {
			v := pb[k*no+o]
			p := A[k*no+o] + f*mk*v + (1-bm)*pg[o]
			hc := H[k*no+o] + f*mk*h2(v) + (1-bm)*hg[o]
			pp[o] = p
			gain[o] = h2(p) - hc
		}
		build := 0.0
		if !s.st[x].built {
			build = c.Build
		}
		// Runs that end in a failure of another signature count for
		// nothing: each run that counts costs masking() runs.
		mw := s.st[x].masking()
		// Expected exposure of option o when the run(s) stop at the
		// first failure.
		x0 := opts[0]
		for o := range opts {
			if o > 0 {
				x0 += (opts[o] - opts[o-1]) * pp[o-1]
			}
			var cost float64
			if s.unit == UnitRuns {
				cost = build + x0*c.Run*mw
			} else {
				cost = build + (c.Run+x0)*mw
			}
			if cost <= 0 {
				cost = 1e-9
			}
			if gain[o] < minUsefulGain {
				continue
			}
			if sc := gain[o] / cost; sc > bestScore {
				bestScore = sc
				best = Request{Pos: x, Exposure: opts[o], Gain: gain[o], Cost: cost}
			}
		}
	}
	return best, best.Pos >= 0
}

// planJoint chooses the next test given tests in flight: it maximises the
// information the new test adds to theirs (multisection).
func (s *Search) planJoint(c Costs, opts []float64, pending []Request, cands []int) (Request, bool) {
	const maxJoint = 6
	if len(pending) > maxJoint-1 {
		pending = pending[len(pending)-(maxJoint-1):]
	}
	if s.unit == UnitRuns && len(opts) > 3 {
		// Fewer batch sizes: the joint information is costly to compute.
		opts = []float64{1, 4, 16}
	}
	base := s.jointMI(pending, c.yield())
	best := Request{Pos: -1}
	bestScore := 0.0
	tests := append([]Request(nil), pending...)
	tests = append(tests, Request{})
	for _, x := range cands {
		// A build under way costs the worker that waits for it about as
		// much as a build of its own: it is counted in full.
		build := 0.0
		if !s.st[x].built {
			build = c.Build
		}
		w := s.st[x].masking()
		for _, e := range opts {
			tests[len(tests)-1] = Request{Pos: x, Exposure: e}
			g := s.jointMI(tests, c.yield()) - base
			if g < minUsefulGain {
				continue
			}
			// Cost without the fail-stop discount: good enough to rank.
			cost := build + e*c.Run*w
			if s.unit == UnitTime {
				cost = build + (c.Run+e)*w
			}
			if sc := g / cost; sc > bestScore {
				bestScore = sc
				best = Request{Pos: x, Exposure: e, Gain: g, Cost: cost}
			}
		}
	}
	return best, best.Pos >= 0
}

// jointMI is the mutual information between the outcomes (all pass, or a
// failure) of the given tests and the first bad position, treating the
// outcomes as independent given it; y is the exposure of a minute of test
// (time mode; see Costs.Yield).
func (s *Search) jointMI(tests []Request, y float64) float64 {
	if len(tests) == 0 {
		return 0
	}
	// Tests of one position are one test of their summed exposure: their
	// outcomes are not independent (they share the position's rate).
	merged := make([]Request, 0, len(tests))
	for _, t := range tests {
		dup := false
		for i := range merged {
			if merged[i].Pos == t.Pos {
				merged[i].Exposure += t.Exposure
				dup = true
			}
		}
		if !dup {
			merged = append(merged, t)
		}
	}
	tests = merged
	s.update()
	// Parts: segments split just after every test position.
	type part struct {
		m   float64
		seg int
		hi  int
	}
	var parts []part
	cuts := make([]int, 0, len(tests))
	for _, t := range tests {
		cuts = append(cuts, t.Pos)
	}
	sort.Ints(cuts)
	for j := range s.segM {
		lo, hi := s.segLo[j], s.segHi[j]
		w := s.cum[hi+1] - s.cum[lo]
		start := lo
		for _, x := range cuts {
			if x >= start && x < hi {
				m := 0.0
				if w > 0 {
					m = s.segM[j] * (s.cum[x+1] - s.cum[start]) / w
				}
				parts = append(parts, part{m, j, x})
				start = x + 1
			}
		}
		m := 0.0
		if w > 0 {
			m = s.segM[j] * (s.cum[hi+1] - s.cum[start]) / w
		}
		parts = append(parts, part{m, j, hi})
	}
	L := len(tests)
	pass := make([]float64, len(parts)*L)
	var hc float64
	for i, p := range parts {
		for t, r := range tests {
			var v float64
			if p.hi <= r.Pos { // every hypothesis of the part makes r.Pos bad
				v = s.model.passBad(s.segF[p.seg], s.segE[p.seg], r.Exposure*y)
			} else {
				v = s.model.passGood(r.Exposure * y)
			}
			pass[i*L+t] = v
			hc += p.m * h2(v)
		}
	}
	var ho float64
	for o := 0; o < 1<<L; o++ {
		var po float64
		for i, p := range parts {
			if p.m == 0 {
				continue
			}
			q := p.m
			for t := 0; t < L; t++ {
				if o&(1<<t) != 0 {
					q *= pass[i*L+t]
				} else {
					q *= 1 - pass[i*L+t]
				}
			}
			po += q
		}
		if po > 0 {
			ho -= po * math.Log2(po)
		}
	}
	return ho - hc
}
