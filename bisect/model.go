package bisect

import (
	"math"
	"sort"
)

// Unit says how the exposure of a test is measured: in runs (each run a
// Bernoulli trial that fails with an unknown probability p) or in minutes
// of test time (failures arrive at an unknown rate λ per minute, and a run
// stops at its first failure).
type Unit string

// Units of exposure.
const (
	UnitRuns Unit = "runs"
	UnitTime Unit = "time"
)

// Prior and noise parameters of the default model. They are the defaults
// of ModelParams; see there.
const (
	defaultPriorA      = 0.02
	defaultPriorB      = 0.5
	defaultTimePriorB  = 0.5 // minutes of pseudo-exposure (Core uses half the shortest run)
	defaultFalseFail   = 1e-3
	defaultFalseRate   = 1e-3 // per minute of test on a good commit
	defaultPredates    = 0.02
	defaultMargin      = 0.5
	minUsefulGain      = 1e-6
	defaultEndpointRun = 1000
)

// ModelParams are the assumptions of the probabilistic model. The zero value
// means the defaults. A job stores them with its options; jobs before
// snake_case keys stored the Go names (PriorA, ...), always zero there, as
// the CLI sets none: read as the defaults they meant.
type ModelParams struct {
	// PriorA and PriorB are the prior on the detection rate of a bad
	// commit: Beta(PriorA, PriorB) on the per-run failure probability p
	// (runs), or Gamma(PriorA, rate PriorB per minute) on the failure rate
	// per minute (time). The defaults, Beta(0.02, 1/2) and Gamma(0.02,
	// half the shortest run), are nearly scale-free (close to p^-1 (1-p)^-1/2, Jeffreys'
	// prior for runs repeated until a failure): a prior leaning towards
	// high rates makes passes look more convincing than they are when the
	// rate is low, and the stated confidence would overstate itself there.
	// PriorA may be <= 0 (improper; fine once bad has failed).
	PriorA float64 `json:"prior_a,omitempty"`
	PriorB float64 `json:"prior_b,omitempty"`
	// FalseFail is the probability that a good commit fails a run (runs),
	// or its failure rate per minute (time): failures that are not the
	// bug. Default 1e-3.
	FalseFail float64 `json:"false_fail,omitempty"`
	// Predates is the prior probability that the bug predates good, i.e.
	// that good is not good after all (default 0.02). Too small, and a bug
	// that is already in good gets blamed on the first commits of the range.
	Predates float64 `json:"predates,omitempty"`
	// KnownRate, when > 0, fixes p (or λ) instead of integrating over it
	// (for the simulator's oracle only).
	KnownRate float64 `json:"known_rate,omitempty"`
	// RateSpread (>= 1; default 1) allows bad commits to fail at rates up
	// to this factor below the common one: the passes of a commit that
	// never failed count 1/RateSpread each against its being bad. It buys
	// robustness to rates that differ between commits with runs (1.2
	// costs about 12% more runs).
	RateSpread float64 `json:"rate_spread,omitempty"`
	// PlugIn estimates p from the runs on commits that failed and uses it
	// as if known (the bisect-kit-like baseline; overconfident).
	PlugIn bool `json:"plug_in,omitempty"`
}

// WithDefaults returns mp with its zero fields set to the defaults of unit
// u (in time mode, NewCore sets PriorB to half the shortest run instead).
func (mp ModelParams) WithDefaults(u Unit) ModelParams {
	if mp.PriorA == 0 {
		mp.PriorA = defaultPriorA
	}
	if mp.PriorB <= 0 {
		if u == UnitTime {
			mp.PriorB = defaultTimePriorB
		} else {
			mp.PriorB = defaultPriorB
		}
	}
	if mp.FalseFail <= 0 {
		if u == UnitTime {
			mp.FalseFail = defaultFalseRate
		} else {
			mp.FalseFail = defaultFalseFail
		}
	}
	if mp.RateSpread < 1 {
		mp.RateSpread = 1
	}
	if mp.Predates <= 0 || mp.Predates >= 1 {
		mp.Predates = defaultPredates
	}
	return mp
}

// rateModel is the likelihood of the runs on a set of commits, given whether
// they are bad or good. Bad commits share one unknown detection rate that is
// integrated out in closed form (Beta-Bernoulli or Gamma-Poisson).
type rateModel struct {
	unit     Unit
	p        ModelParams
	lnorm    float64 // log normaliser of the prior
	logEps   float64
	log1mEps float64
	rate     float64 // > 0: fixed p or λ (known or plugged in)
}

func newRateModel(u Unit, p ModelParams) *rateModel {
	p = p.WithDefaults(u)
	m := &rateModel{unit: u, p: p}
	if p.PriorA <= 0 {
		// Improper: the normaliser is the same for every hypothesis.
		m.lnorm = 0
	} else if u == UnitTime {
		lg, _ := math.Lgamma(p.PriorA)
		m.lnorm = p.PriorA*math.Log(p.PriorB) - lg
	} else {
		m.lnorm = -lbeta(p.PriorA, p.PriorB)
	}
	if u == UnitTime {
		m.logEps = math.Log(p.FalseFail)
	} else {
		m.logEps = math.Log(p.FalseFail)
		m.log1mEps = math.Log1p(-p.FalseFail)
	}
	m.rate = p.KnownRate
	return m
}

func lbeta(a, b float64) float64 {
	x, _ := math.Lgamma(a)
	y, _ := math.Lgamma(b)
	z, _ := math.Lgamma(a + b)
	return x + y - z
}

// logML is the log marginal likelihood of F failures and exposure E (passing
// runs, or minutes of test) on commits that are all bad.
func (m *rateModel) logML(F, E float64) float64 {
	if m.rate > 0 {
		if m.unit == UnitTime {
			return F*math.Log(m.rate) - m.rate*E
		}
		return F*math.Log(m.rate) + E*math.Log1p(-m.rate)
	}
	a, b := m.alpha(F), m.p.PriorB
	if m.unit == UnitTime {
		lg, _ := math.Lgamma(a)
		return m.lnorm + lg - a*math.Log(b+E)
	}
	return m.lnorm + lbeta(a, b+E)
}

// passBad is the probability that a bad commit shows no failure over a
// further exposure e, given F failures and exposure E on the bad commits.
func (m *rateModel) passBad(F, E, e float64) float64 {
	if m.rate > 0 {
		if m.unit == UnitTime {
			return math.Exp(-m.rate * e)
		}
		return math.Pow(1-m.rate, e)
	}
	a, b := m.alpha(F), m.p.PriorB
	if m.unit == UnitTime {
		return math.Pow((b+E)/(b+E+e), a)
	}
	// Beta-Bernoulli: Π_{i<e} (b+E+i)/(a+F+b+E+i) for integer e.
	if e == math.Trunc(e) && e <= 64 {
		r := 1.0
		x, y := b+E, a+b+E
		for i := 0.0; i < e; i++ {
			r *= (x + i) / (y + i)
		}
		return r
	}
	l1, _ := math.Lgamma(b + E + e)
	l2, _ := math.Lgamma(a + b + E)
	l3, _ := math.Lgamma(b + E)
	l4, _ := math.Lgamma(a + b + E + e)
	return math.Exp(l1 + l2 - l3 - l4)
}

// goodLL is the log-likelihood of F failures and exposure E on good commits.
func (m *rateModel) goodLL(F, E float64) float64 {
	if m.unit == UnitTime {
		return F*m.logEps - m.p.FalseFail*E
	}
	return F*m.logEps + E*m.log1mEps
}

// passGood is the probability that a good commit passes a further exposure e.
func (m *rateModel) passGood(e float64) float64 {
	if m.unit == UnitTime {
		return math.Exp(-m.p.FalseFail * e)
	}
	return math.Exp(e * m.log1mEps)
}

// meanRate is the posterior mean of p (or λ) given F failures and exposure
// E on bad commits.
func (m *rateModel) meanRate(F, E float64) float64 {
	if m.rate > 0 {
		return m.rate
	}
	a, b := m.alpha(F), m.p.PriorB
	if m.unit == UnitTime {
		return a / (b + E)
	}
	return a / (a + b + E)
}

// alpha is the posterior shape a+F, kept positive for an improper prior
// (a <= 0) before any failure.
func (m *rateModel) alpha(F float64) float64 {
	return math.Max(m.p.PriorA+F, 1e-3)
}

// posStat is what is known about one position of the search.
type posStat struct {
	F, E  float64 // failures; exposure (passing runs, or minutes of test)
	runs  int
	skip  bool // untestable (build or boot failure): keeps its mass, never tested again
	built bool // a build exists: another run costs no build
	// other counts the runs that ended in a failure of another signature
	// than the one bisected, otherE their exposure: they say nothing
	// about the bug (neither pass nor fail) but cost what they cost.
	other  int
	otherE float64
}

// maskedAfter is the number of runs that all failed with another
// signature, none counting, after which a position is untestable: another
// bug hides this one there (for good: at 90% of the runs, the odds of so
// many in a row are 0.6%). Fewer only make it dearer (posStat.masking).
const maskedAfter = 48

// masked reports whether failures of another signature hide the bug at
// this position.
func (st *posStat) masked() bool {
	return st.runs == 0 && st.other >= maskedAfter
}

// untestable reports whether the position can no longer be tested: it
// does not build or boot, or another bug hides this one there.
func (st *posStat) untestable() bool { return st.skip || st.masked() }

// masking is the expected number of runs per run that counts, from the
// share of runs that ended in a failure of another signature (Laplace's
// rule): 1 where there was none.
func (st *posStat) masking() float64 {
	return float64(st.runs+st.other+1) / float64(st.runs+1)
}

// Search is the state of a bisection over an ordered list of positions: 0
// is the good commit, n-1 the bad one, and hypothesis c says position c is
// the first bad one (c == 0: the bug predates good). It holds the data and
// computes the posterior over c.
type Search struct {
	unit  Unit
	model *rateModel
	prior []float64
	cum   []float64 // cum[i] = Σ_{k<i} prior[k]
	st    []posStat

	// Posterior, valid when !dirty. Segment j covers positions
	// [segLo[j], segHi[j]]: all hypotheses in it see the same bad set.
	dirty  bool
	segLo  []int
	segHi  []int
	segM   []float64 // posterior mass
	segF   []float64 // failures on the bad set of the segment
	segE   []float64 // exposure on the bad set (as the model counts it)
	segRaw []float64 // exposure on the bad set
	tested []int
	best   int
	bestP  float64
	cumM   []float64 // cumM[j] = Σ_{k<j} segM[k]

	// known, when set, is a shadow search that is told the rate and is
	// fed every change made to this one (the simulator's oracle-stop and
	// oracle-plan strategies).
	known *Search
}

// NewSearch returns a search over n positions (n >= 2: good, the commits of
// the range, bad last) with a uniform prior over the commits of the range
// and params.Predates on "the bug predates good".
func NewSearch(n int, u Unit, params ModelParams) *Search {
	params = params.WithDefaults(u)
	prior := make([]float64, n)
	for i := range prior {
		prior[i] = 1
	}
	prior[0] = params.Predates / (1 - params.Predates) * float64(n-1)
	return newSearchPrior(prior, u, params)
}

func newSearchPrior(prior []float64, u Unit, params ModelParams) *Search {
	s := &Search{unit: u, model: newRateModel(u, params), prior: prior, st: make([]posStat, len(prior)), dirty: true}
	s.recum()
	return s
}

func (s *Search) recum() {
	s.cum = make([]float64, len(s.prior)+1)
	for i, w := range s.prior {
		s.cum[i+1] = s.cum[i] + w
	}
}

// Len is the number of positions.
func (s *Search) Len() int { return len(s.prior) }

// Record adds one run at position pos: failed or not, with exposure e
// (1 for a run in runs mode, minutes of test in time mode).
func (s *Search) Record(pos int, failed bool, e float64) {
	if s.known != nil {
		s.known.Record(pos, failed, e)
	}
	st := &s.st[pos]
	st.runs++
	st.built = true
	if failed {
		st.F++
		if s.unit == UnitTime {
			st.E += e
		}
	} else {
		st.E += e
	}
	s.dirty = true
}

// RecordOther records a run at pos that ended in a failure of another
// signature than the one bisected, with exposure e: it counts as neither a
// pass nor a fail.
func (s *Search) RecordOther(pos int, e float64) {
	if s.known != nil {
		s.known.RecordOther(pos, e)
	}
	st := &s.st[pos]
	st.other++
	st.otherE += e
	st.built = true
}

// Other returns the runs at pos that failed with another signature, and
// their exposure.
func (s *Search) Other(pos int) (runs int, exposure float64) {
	return s.st[pos].other, s.st[pos].otherE
}

// MarkSkip records that position pos cannot be tested.
func (s *Search) MarkSkip(pos int) {
	if s.known != nil {
		s.known.MarkSkip(pos)
	}
	s.st[pos].skip = true
	s.dirty = true
}

// MarkBuilt records that pos has a build (a run there costs no build).
func (s *Search) MarkBuilt(pos int) {
	if s.known != nil {
		s.known.MarkBuilt(pos)
	}
	s.st[pos].built = true
}

// Insert inserts len(w) new positions before position pos with prior
// weights w taken from pos's own weight (which keeps what is left), e.g. to
// expand a merge into the commits it brought in.
func (s *Search) Insert(pos int, w []float64) {
	if len(w) == 0 {
		return
	}
	if s.known != nil {
		s.known.Insert(pos, w)
	}
	prior := make([]float64, 0, len(s.prior)+len(w))
	prior = append(prior, s.prior[:pos]...)
	prior = append(prior, w...)
	prior = append(prior, s.prior[pos:]...)
	st := make([]posStat, 0, len(prior))
	st = append(st, s.st[:pos]...)
	st = append(st, make([]posStat, len(w))...)
	st = append(st, s.st[pos:]...)
	s.prior, s.st = prior, st
	s.recum()
	s.dirty = true
}

// SetPrior replaces the prior weight of pos.
func (s *Search) SetPrior(pos int, w float64) {
	if s.known != nil {
		s.known.SetPrior(pos, w)
	}
	s.prior[pos] = w
	s.recum()
	s.dirty = true
}

func (s *Search) update() {
	if !s.dirty {
		return
	}
	s.dirty = false
	n := len(s.prior)
	s.tested = s.tested[:0]
	for i := range s.st {
		if s.st[i].runs > 0 {
			s.tested = append(s.tested, i)
		}
	}
	s.segLo, s.segHi = s.segLo[:0], s.segHi[:0]
	lo := 0
	for _, t := range s.tested {
		s.segLo = append(s.segLo, lo)
		s.segHi = append(s.segHi, t)
		lo = t + 1
	}
	if lo < n {
		s.segLo = append(s.segLo, lo)
		s.segHi = append(s.segHi, n-1)
	}
	ns := len(s.segLo)
	s.segF = resize(s.segF, ns)
	s.segE = resize(s.segE, ns)
	s.segM = resize(s.segM, ns)
	// Bad set of segment j: tested positions >= segLo[j], i.e. tested[j:].
	var f, e, raw float64
	s.segRaw = resize(s.segRaw, ns)
	for j := ns - 1; j >= 0; j-- {
		if j < len(s.tested) {
			st := s.st[s.tested[j]]
			f += st.F
			raw += st.E
			if st.F == 0 {
				e += st.E / s.model.p.RateSpread
			} else {
				e += st.E
			}
		}
		s.segF[j], s.segE[j], s.segRaw[j] = f, e, raw
	}
	totF, totE := f, raw
	if s.model.p.PlugIn {
		s.model.rate = s.plugInRate()
	}
	maxL := math.Inf(-1)
	for j := 0; j < ns; j++ {
		gF, gE := totF-s.segF[j], totE-s.segRaw[j]
		w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
		l := math.Inf(-1)
		if w > 0 {
			l = math.Log(w) + s.model.logML(s.segF[j], s.segE[j]) + s.model.goodLL(gF, gE)
		}
		s.segM[j] = l
		if l > maxL {
			maxL = l
		}
	}
	var z float64
	for j := range s.segM {
		s.segM[j] = math.Exp(s.segM[j] - maxL)
		z += s.segM[j]
	}
	s.cumM = resize(s.cumM, ns+1)
	s.bestP = -1
	for j := range s.segM {
		s.segM[j] /= z
		s.cumM[j+1] = s.cumM[j] + s.segM[j]
		// The most likely position of the segment is its heaviest one.
		w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
		if w <= 0 {
			continue
		}
		bi, bw := s.segLo[j], -1.0
		if s.segHi[j]-s.segLo[j] < 64 {
			for i := s.segLo[j]; i <= s.segHi[j]; i++ {
				if s.prior[i] > bw {
					bi, bw = i, s.prior[i]
				}
			}
		} else {
			bi, bw = s.segLo[j], s.prior[s.segLo[j]]
		}
		if p := s.segM[j] * bw / w; p > s.bestP {
			s.best, s.bestP = bi, p
		}
	}
}

// plugInRate estimates p from the runs on commits that failed at least once
// (Laplace-smoothed), as a bisect-kit-like search that plugs in p would.
func (s *Search) plugInRate() float64 {
	var f, e float64
	for _, st := range s.st {
		if st.F > 0 {
			f += st.F
			e += st.E
		}
	}
	if s.unit == UnitTime {
		return (f + 1) / (e + 1)
	}
	return (f + 1) / (f + e + 2)
}

func resize(x []float64, n int) []float64 {
	if cap(x) >= n {
		return x[:n]
	}
	return make([]float64, n)
}

// Best returns the most probable first bad position and its probability.
func (s *Search) Best() (int, float64) {
	s.update()
	return s.best, s.bestP
}

// Prob returns the posterior probability that pos is the first bad one.
func (s *Search) Prob(pos int) float64 {
	s.update()
	j := s.segOf(pos)
	w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
	if w <= 0 {
		return 0
	}
	return s.segM[j] * s.prior[pos] / w
}

// ProbBad returns the posterior probability that position pos is bad (the
// first bad position is at or before it).
func (s *Search) ProbBad(pos int) float64 {
	s.update()
	j := s.segOf(pos)
	w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
	f := 1.0
	if w > 0 {
		f = (s.cum[pos+1] - s.cum[s.segLo[j]]) / w
	}
	return s.cumM[j] + f*s.segM[j]
}

// Posterior returns the posterior probability of every position.
func (s *Search) Posterior() []float64 {
	s.update()
	out := make([]float64, len(s.prior))
	for j := range s.segM {
		w := s.cum[s.segHi[j]+1] - s.cum[s.segLo[j]]
		if w <= 0 {
			continue
		}
		for i := s.segLo[j]; i <= s.segHi[j]; i++ {
			out[i] = s.segM[j] * s.prior[i] / w
		}
	}
	return out
}

// RateEstimate returns the posterior mean detection rate (p per run, or λ
// per minute) given that the most probable position is the first bad one.
func (s *Search) RateEstimate() float64 {
	s.update()
	j := s.segOf(s.best)
	return s.model.meanRate(s.segF[j], s.segE[j])
}

func (s *Search) segOf(pos int) int {
	return sort.SearchInts(s.segHi, pos)
}

// Stat returns runs, failures and exposure recorded at pos.
func (s *Search) Stat(pos int) (runs int, fails, exposure float64) {
	st := s.st[pos]
	return st.runs, st.F, st.E
}

// Skipped reports whether pos was found untestable: it does not build or
// boot, or failures of another signature hide the bug there.
func (s *Search) Skipped(pos int) bool { return s.st[pos].untestable() }

// Built reports whether pos has a build.
func (s *Search) Built(pos int) bool { return s.st[pos].built }

// untestable reports whether every position in lo..hi was found untestable.
func (s *Search) untestable(lo, hi int) bool {
	for i := lo; i <= hi; i++ {
		if !s.st[i].untestable() {
			return false
		}
	}
	return true
}

// credibleRun returns the smallest run of consecutive positions around the
// most probable one whose posterior mass reaches conf (or all of them).
func (s *Search) credibleRun(conf float64) (lo, hi int, mass float64) {
	s.update()
	post := s.Posterior()
	lo, hi = s.best, s.best
	mass = post[s.best]
	for mass < conf && (lo > 0 || hi < len(post)-1) {
		var l, h float64 = -1, -1
		if lo > 0 {
			l = post[lo-1]
		}
		if hi < len(post)-1 {
			h = post[hi+1]
		}
		if l >= h {
			lo--
			mass += l
		} else {
			hi++
			mass += h
		}
	}
	return lo, hi, mass
}
