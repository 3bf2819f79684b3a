package bisect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"

	"github.com/kbisect/kbisect/internal/fsutil"
)

// SpecVersion is the version of the job directory format.
const SpecVersion = 1

// Spec identifies a bisection and says how to run it. It is the first
// record of the journal; resume needs nothing else.
type Spec struct {
	Version int    `json:"version"`
	Repo    string `json:"repo"`
	Good    string `json:"good"`
	Bad     string `json:"bad"`
	GoodRef string `json:"good_ref,omitempty"`
	BadRef  string `json:"bad_ref,omitempty"`
	// Exec is the --exec command; empty for the kernel pipeline.
	Exec string `json:"exec,omitempty"`
	// TestArgs are the kernel test's command-line flags, kept opaque.
	TestArgs []string `json:"test_args,omitempty"`
	// Cwd is where the bisection was started (relative paths in TestArgs
	// are relative to it).
	Cwd     string  `json:"cwd,omitempty"`
	Options Options `json:"options"`
}

// Options are the settings of a bisection.
type Options struct {
	// Strategy is "bayes" (default) or "classic[:K]"; see ParseStrategy.
	Strategy   string  `json:"strategy"`
	Confidence float64 `json:"confidence"`
	Unit       Unit    `json:"unit"`
	// BudgetRuns or Budget bound the test given to bad to show a failure
	// before the search (the endpoint check). In runs mode a time Budget
	// is also capped at 1000 runs.
	BudgetRuns int           `json:"budget_runs,omitempty"`
	Budget     time.Duration `json:"budget,omitempty"`
	// RunTime and MaxRunTime bound the length of one run in time mode.
	RunTime    time.Duration `json:"run_time,omitempty"`
	MaxRunTime time.Duration `json:"max_run_time,omitempty"`
	// Timeout is the time limit of one run in runs mode (0: none).
	Timeout time.Duration `json:"timeout,omitempty"`
	// BuildCost is the cost of a build in runs (runs mode) or minutes (time
	// mode); 0 means measured from the builds done.
	BuildCost float64 `json:"build_cost,omitempty"`
	// Parallel is the number of tests in flight at once.
	Parallel int `json:"parallel,omitempty"`
	// Retries is how many infrastructure errors in a row are retried
	// before the bisection stops.
	Retries      int           `json:"retries,omitempty"`
	RetryBackoff time.Duration `json:"retry_backoff,omitempty"`
	// MaxRuns and MaxTime stop the search (inconclusive) when reached.
	MaxRuns int           `json:"max_runs,omitempty"`
	MaxTime time.Duration `json:"max_time,omitempty"`
	// VerifyRevert tests bad with the culprit reverted once it is found.
	VerifyRevert bool        `json:"verify_revert,omitempty"`
	Model        ModelParams `json:"model"`
}

func (o *Options) defaults() {
	if o.Strategy == "" {
		o.Strategy = "bayes"
	}
	if o.Confidence <= 0 || o.Confidence >= 1 {
		o.Confidence = 0.99
	}
	if o.Unit == "" {
		o.Unit = UnitRuns
	}
	if o.BudgetRuns <= 0 && o.Budget <= 0 {
		o.Budget = 30 * time.Minute
	}
	if o.RunTime <= 0 {
		o.RunTime = time.Minute
	}
	if o.MaxRunTime < o.RunTime {
		o.MaxRunTime = 16 * o.RunTime
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
}

// Validate checks the options.
func (o *Options) Validate() error {
	o.defaults()
	if _, err := ParseStrategy(o.Strategy); err != nil {
		return err
	}
	if o.Unit != UnitRuns && o.Unit != UnitTime {
		return fmt.Errorf("unknown unit %q: use runs or time", o.Unit)
	}
	if o.Parallel > 64 {
		return fmt.Errorf("--parallel %d: at most 64", o.Parallel)
	}
	return nil
}

// Result is the answer of a bisection.
type Result struct {
	Status     string  `json:"status"`
	Culprit    string  `json:"culprit,omitempty"`
	Subject    string  `json:"subject,omitempty"`
	Confidence float64 `json:"confidence"`
	// Candidates are the commits the culprit is among when untestable
	// commits leave several (status inconclusive).
	Candidates []string `json:"candidates,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	// Flags warn about the culprit: "merge", "tag:<name>",
	// "same-binary-as-parent".
	Flags  []string      `json:"flags,omitempty"`
	Revert *RevertResult `json:"revert,omitempty"`

	Runs        int     `json:"runs"`
	Builds      int     `json:"builds"`
	Skips       int     `json:"skips"`
	InfraErrors int     `json:"infra_errors"`
	LostRuns    int     `json:"lost_runs,omitempty"`
	TestSeconds float64 `json:"test_seconds"`
	BuildSecs   float64 `json:"build_seconds"`
	// Rate is the estimated detection rate of a bad commit: per run (runs
	// mode) or per minute (time mode).
	Rate     float64 `json:"rate"`
	RateUnit string  `json:"rate_unit"`
	Strategy string  `json:"strategy"`
	Good     string  `json:"good"`
	Bad      string  `json:"bad"`
	Job      string  `json:"job"`
}

// RevertResult is the outcome of testing bad with the culprit reverted.
type RevertResult struct {
	// Verdict is "fixed" (no failure where bad would have failed with
	// probability 0.99), "still-fails", "does-not-apply" or "unsupported".
	Verdict string  `json:"verdict"`
	Runs    int     `json:"runs"`
	Fails   int     `json:"fails"`
	Minutes float64 `json:"minutes,omitempty"`
	Reason  string  `json:"reason,omitempty"`
}

// Progress reports one event of a running bisection.
type Progress struct {
	Phase    string // "endpoint", "search", "revert"
	Seq      int
	Commit   Commit
	Pos, N   int
	Verdict  Verdict
	Elapsed  time.Duration
	Err      error
	Best     Commit
	BestP    float64
	Runs     int
	Builds   int
	Message  string
	Finished *Result
}

// ErrInterrupted is returned by Run when its context is cancelled; the
// journal is consistent and the job can be resumed.
var ErrInterrupted = errors.New("bisection interrupted")

const commitsName = "commits.json"

// Job is a bisection in its job directory.
type Job struct {
	Dir  string
	Spec Spec

	hist    History
	commits []Commit
	index   map[string]int
	core    *Core
	journal *Journal
	lock    *Lock

	records   []Record
	nextSeq   int
	open      map[int]bool // begun, not completed
	runs      int
	builds    int
	skips     int
	infra     int
	lost      int
	testMin   float64
	buildMin  float64
	nBuilds   int
	runWall   float64 // minutes of run wall time without builds
	nRunWall  int
	sig       map[string]string
	expanded  map[string]bool
	revert    []Record
	finished  *Result
	posterior [][]float64 // binned posterior after every run (reports)
	bestP     []float64   // probability of the most probable commit after every run
	keepHist  bool
	badTime   float64 // minutes of test at bad before its first failure
	// revertCulprit is the conclusion being checked by reverting it.
	revertCulprit *Conclusion
}

// Create starts a new bisection in dir for spec over hist, taking the job
// directory's lock. It refuses a directory that already holds a
// bisection.
func Create(dir string, spec Spec, hist History) (*Job, error) {
	if err := spec.Options.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("job directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("job directory %s: %w", dir, err)
	}
	lock, err := LockJob(abs)
	if err != nil {
		return nil, err
	}
	if recs, err := ReadJournal(abs); err == nil {
		lock.Unlock()
		old := recs[0].Spec
		if old.Repo == spec.Repo && old.Good == spec.Good && old.Bad == spec.Bad && old.Exec == spec.Exec {
			return nil, fmt.Errorf("job directory %s already holds this bisection: continue it with `kbisect bisect resume %s`, or give another --job", abs, abs)
		}
		return nil, fmt.Errorf("job directory %s belongs to another bisection (%s, good %s, bad %s): give another --job, or `kbisect bisect resume %s`", abs, old.Repo, gitrepo.Short(old.Good), gitrepo.Short(old.Bad), abs)
	} else if _, serr := os.Stat(filepath.Join(abs, JournalName)); serr == nil {
		lock.Unlock()
		return nil, fmt.Errorf("job directory %s: %w", abs, err)
	}
	spec.Version = SpecVersion
	commits := hist.Commits()
	if err := fsutil.WriteFile(filepath.Join(abs, commitsName), mustJSON(commits), 0o644); err != nil {
		lock.Unlock()
		return nil, err
	}
	j, err := newJob(abs, spec, commits, hist)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	j.lock = lock
	if j.journal, err = OpenJournal(abs); err != nil {
		lock.Unlock()
		return nil, err
	}
	if err := j.append(Record{Type: RecStart, Spec: &j.Spec, PID: os.Getpid()}); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// Open reads the bisection in dir without taking it (for status, log and
// reports). hist may be nil: the commits recorded in the job are used.
func Open(dir string) (*Job, error) {
	return open(dir, nil, false)
}

// Resume takes the bisection in dir over to continue it. hist, when not
// nil, is used to expand merges.
func Resume(dir string, hist History) (*Job, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("job directory %s: %w", dir, err)
	}
	if _, err := ReadJournal(abs); err != nil {
		return nil, err
	}
	lock, err := LockJob(abs)
	if err != nil {
		return nil, err
	}
	j, err := open(abs, hist, false)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	j.lock = lock
	if j.journal, err = OpenJournal(abs); err != nil {
		lock.Unlock()
		return nil, err
	}
	return j, nil
}

func open(dir string, hist History, keepHist bool) (*Job, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("job directory %s: %w", dir, err)
	}
	recs, err := ReadJournal(abs)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, commitsName))
	if err != nil {
		return nil, fmt.Errorf("job directory %s: %w", abs, err)
	}
	var commits []Commit
	if err := json.Unmarshal(b, &commits); err != nil {
		return nil, fmt.Errorf("job directory %s: %s: %w", abs, commitsName, err)
	}
	if hist == nil {
		hist = LinearHistory(commits)
	}
	j, err := newJob(abs, *recs[0].Spec, commits, hist)
	if err != nil {
		return nil, err
	}
	j.keepHist = keepHist
	for _, r := range recs {
		j.apply(r)
	}
	return j, nil
}

func newJob(dir string, spec Spec, commits []Commit, hist History) (*Job, error) {
	if err := spec.Options.Validate(); err != nil {
		return nil, fmt.Errorf("job %s: %w", dir, err)
	}
	if len(commits) < 2 {
		return nil, fmt.Errorf("job %s: fewer than two commits", dir)
	}
	sp, _ := ParseStrategy(spec.Options.Strategy)
	o := spec.Options
	plan := Plan{
		Strategy:   sp,
		Unit:       o.Unit,
		Confidence: o.Confidence,
		Model:      o.Model,
		RunBase:    o.RunTime.Minutes(),
		RunMax:     o.MaxRunTime.Minutes(),
	}
	plan.EndpointBudget = 1e18
	if o.Unit == UnitRuns {
		// A time budget in runs mode is checked by the job; runs are
		// capped anyway, for tests that take no time.
		plan.EndpointBudget = defaultEndpointRun
		if o.BudgetRuns > 0 {
			plan.EndpointBudget = float64(o.BudgetRuns)
		}
	}
	if o.Unit == UnitTime {
		switch {
		case o.Budget > 0:
			plan.EndpointBudget = o.Budget.Minutes()
		case o.BudgetRuns > 0:
			plan.EndpointBudget = float64(o.BudgetRuns) * plan.RunBase
		}
	}
	j := &Job{
		Dir: dir, Spec: spec, hist: hist,
		commits:  append([]Commit(nil), commits...),
		core:     NewCore(len(commits), plan),
		nextSeq:  1,
		open:     make(map[int]bool),
		sig:      make(map[string]string),
		expanded: make(map[string]bool),
	}
	j.reindex()
	j.updateCosts()
	return j, nil
}

func (j *Job) reindex() {
	j.index = make(map[string]int, len(j.commits))
	for i, c := range j.commits {
		j.index[c.Hash] = i
	}
}

func (j *Job) append(r Record) error {
	if err := j.journal.Append(r); err != nil {
		return err
	}
	j.apply(r)
	return nil
}

// apply folds one journal record into the state.
func (j *Job) apply(r Record) {
	j.records = append(j.records, r)
	if r.Seq >= j.nextSeq {
		j.nextSeq = r.Seq + 1
	}
	switch r.Type {
	case RecBegin:
		j.open[r.Seq] = true
	case RecRun:
		delete(j.open, r.Seq)
		pos, ok := j.index[r.Commit]
		if !ok {
			return
		}
		if r.Built {
			j.builds++
			j.nBuilds++
			j.buildMin += r.BuildTime / 60
		}
		if r.Signature != "" {
			j.sig[r.Commit] = r.Signature
		}
		if r.Verdict == Skip {
			j.skips++
			j.core.Search.MarkSkip(pos)
			j.core.AddCost(j.costOf(r))
			break
		}
		j.runs++
		j.testMin += r.Elapsed / 60
		if w := r.Wall - r.BuildTime; w > 0 {
			j.runWall += w / 60
			j.nRunWall++
		}
		exp := 1.0
		if j.Spec.Options.Unit == UnitTime {
			exp = r.Elapsed / 60
			if exp <= 0 {
				exp = r.Budget / 60
			}
		}
		if pos == len(j.commits)-1 {
			if _, f, _ := j.core.Search.Stat(pos); f == 0 {
				j.badTime += r.Elapsed / 60
			}
		}
		j.core.Record(pos, r.Verdict == Fail, exp, j.costOf(r))
		if j.keepHist {
			j.posterior = append(j.posterior, binPosterior(j.core.Search.Posterior(), reportBins))
			_, bp := j.core.Search.Best()
			j.bestP = append(j.bestP, bp)
		}
	case RecInfra:
		delete(j.open, r.Seq)
		j.infra++
	case RecRevert:
		delete(j.open, r.Seq)
		if r.Built {
			j.builds++
		}
		j.revert = append(j.revert, r)
	case RecExpand:
		pos, ok := j.index[r.Commit]
		if !ok || len(r.Expanded) == 0 {
			j.expanded[r.Commit] = true
			return
		}
		j.expanded[r.Commit] = true
		w := j.core.Search.prior[pos] / float64(len(r.Expanded)+1)
		ws := make([]float64, len(r.Expanded))
		for i := range ws {
			ws[i] = w
		}
		j.core.Search.Insert(pos, ws)
		j.core.Search.SetPrior(pos+len(ws), w)
		nc := make([]Commit, 0, len(j.commits)+len(ws))
		nc = append(nc, j.commits[:pos]...)
		nc = append(nc, r.Expanded...)
		nc = append(nc, j.commits[pos:]...)
		j.commits = nc
		j.reindex()
	case RecFinish:
		j.finished = r.Result
	case RecResume:
		j.lost += len(j.open)
		j.open = make(map[int]bool)
	}
}

// costOf is the cost of a journaled run in the unit of the search.
func (j *Job) costOf(r Record) float64 {
	if j.Spec.Options.Unit == UnitTime {
		return r.Wall / 60
	}
	c := 1.0
	if r.Built {
		c += j.core.Plan.Costs.Build
	}
	return c
}

// updateCosts sets the planner's costs from the options or measurements.
func (j *Job) updateCosts() {
	o := j.Spec.Options
	runWall := 0.5 // minutes, until measured
	if j.nRunWall > 0 {
		runWall = math.Max(j.runWall/float64(j.nRunWall), 1e-4)
	}
	build := 10.0 // minutes, until measured
	if j.nBuilds > 0 {
		build = j.buildMin / float64(j.nBuilds)
	}
	var c Costs
	if o.Unit == UnitTime {
		overhead := 0.5
		if j.nRunWall > 0 && j.runs > 0 {
			overhead = math.Max(0, (j.runWall-j.testMin)/float64(j.nRunWall))
		}
		c = Costs{Build: build, Run: overhead}
		if o.BuildCost > 0 {
			c.Build = o.BuildCost
		}
	} else {
		c = Costs{Run: 1, Build: 3}
		if j.nBuilds > 0 && j.nRunWall > 0 {
			c.Build = math.Min(1000, build/runWall)
		}
		if o.BuildCost > 0 {
			c.Build = o.BuildCost
		}
	}
	j.core.Plan.Costs = c
}

// Close releases the job (journal and lock).
func (j *Job) Close() error {
	var err error
	if j.journal != nil {
		err = j.journal.Close()
		j.journal = nil
	}
	if j.lock != nil {
		j.lock.Unlock()
		j.lock = nil
	}
	return err
}

// Commits returns the commits of the search in order (good first).
func (j *Job) Commits() []Commit { return j.commits }

// Records returns the journal records read or written so far.
func (j *Job) Records() []Record { return j.records }

// Finished returns the result if the bisection has ended.
func (j *Job) Finished() *Result { return j.finished }

// Search returns the state of the search.
func (j *Job) Search() *Search { return j.core.Search }

type runDone struct {
	worker int
	seq    int
	req    Request
	commit string
	revert bool
	out    Outcome
	err    error
	wall   time.Duration
	budget time.Duration
}

// Run runs (or continues) the bisection with tester until it concludes or
// ctx is cancelled (then it returns ErrInterrupted with the journal
// consistent). progress, if not nil, is called after every run.
func (j *Job) Run(ctx context.Context, tester Tester, progress func(Progress)) (*Result, error) {
	if j.journal == nil {
		return nil, fmt.Errorf("job %s is open read-only", j.Dir)
	}
	if j.finished != nil && j.finished.Status != StatusError {
		return j.finished, nil
	}
	if len(j.records) > 1 {
		if err := j.append(Record{Type: RecResume, PID: os.Getpid()}); err != nil {
			return nil, err
		}
	}
	j.finished = nil
	o := j.Spec.Options
	results := make(chan runDone)
	inflight := make(map[int]Request)
	var free []int
	for w := o.Parallel - 1; w >= 0; w-- {
		free = append(free, w)
	}
	consecutive := 0
	var lastErr string
	var backoff <-chan time.Time
	var pendingConcl *Conclusion
	runCtx, cancelRuns := context.WithCancel(ctx)
	defer cancelRuns()
	cancelled := ctx.Done()

	start := func(w int, req Request, revert bool) error {
		seq := j.nextSeq
		commit := j.commits[req.Pos].Hash
		budget := o.Timeout
		if o.Unit == UnitTime {
			budget = time.Duration(req.Exposure * float64(time.Minute)).Round(time.Millisecond)
		}
		if err := j.append(Record{Type: RecBegin, Seq: seq, Worker: w, Commit: commit, Budget: budget.Seconds()}); err != nil {
			return err
		}
		inflight[w] = req
		go func() {
			rctx := withRunInfo(runCtx, RunInfo{Seq: seq, Worker: w, JobDir: j.Dir})
			t0 := time.Now()
			var out Outcome
			var err error
			if revert {
				out, err = tester.(RevertTester).TestRevert(rctx, commit, j.commits[len(j.commits)-1].Hash, budget)
			} else {
				out, err = tester.Test(rctx, commit, budget)
			}
			results <- runDone{worker: w, seq: seq, req: req, commit: commit, revert: revert, out: out, err: err, wall: time.Since(t0), budget: budget}
		}()
		return nil
	}

	for {
		// Schedule while workers are free.
		for ctx.Err() == nil && backoff == nil && pendingConcl == nil && len(free) > 0 {
			var pend []Request
			for _, r := range inflight {
				pend = append(pend, r)
			}
			req, concl, revert := j.next(pend)
			if concl != nil {
				pendingConcl = concl
				break
			}
			if req.Pos < 0 {
				break
			}
			w := free[len(free)-1]
			free = free[:len(free)-1]
			if err := start(w, req, revert); err != nil {
				cancelRuns()
				j.drain(results, inflight)
				return nil, err
			}
		}
		if len(inflight) == 0 {
			if ctx.Err() != nil {
				j.append(Record{Type: RecInterrupt})
				return nil, fmt.Errorf("%w: resume with `kbisect bisect resume %s`", ErrInterrupted, j.Dir)
			}
			if pendingConcl != nil {
				c := pendingConcl
				pendingConcl = nil
				if c.Status != StatusError {
					// Runs that were in flight may have changed the
					// answer: ask again.
					req, again, _ := j.next(nil)
					if again == nil {
						if req.Pos < 0 {
							return nil, fmt.Errorf("bisection %s: nothing to run and no conclusion (bug)", j.Dir)
						}
						continue
					}
					c = again
				}
				if done, err := j.afterConclusion(ctx, c, tester); err != nil {
					return nil, err
				} else if done != nil {
					if progress != nil {
						progress(Progress{Phase: "done", Finished: done, Runs: j.runs, Builds: j.builds})
					}
					return done, nil
				}
				continue // merge expanded, or revert check begins
			}
			if backoff == nil {
				return nil, fmt.Errorf("bisection %s: nothing to run and no conclusion (bug)", j.Dir)
			}
		}
		select {
		case d := <-results:
			delete(inflight, d.worker)
			free = append(free, d.worker)
			if ctx.Err() != nil && (d.err != nil || d.out.Verdict == Error) {
				continue // lost in flight: the run was cut short
			}
			rec := Record{Seq: d.seq, Worker: d.worker, Commit: d.commit, Budget: d.budget.Seconds(),
				Wall: d.wall.Seconds(), Elapsed: d.out.Elapsed.Seconds(), Built: d.out.Built,
				BuildTime: d.out.BuildTime.Seconds(), Signature: d.out.Signature, Reason: d.out.Reason,
				Evidence: d.out.Evidence, Verdict: d.out.Verdict}
			if d.err != nil || d.out.Verdict == Error || (d.out.Verdict != Pass && d.out.Verdict != Fail && d.out.Verdict != Skip) {
				rec.Type = RecInfra
				if d.err != nil {
					rec.Error = d.err.Error()
				} else if d.out.Verdict == Error {
					rec.Error = "test reported an error: " + d.out.Reason
				} else {
					rec.Error = fmt.Sprintf("test returned verdict %q", d.out.Verdict)
				}
				rec.Verdict = ""
				if err := j.append(rec); err != nil {
					return nil, err
				}
				consecutive++
				lastErr = rec.Error
				if progress != nil {
					progress(Progress{Phase: j.phase(d.revert), Seq: d.seq, Commit: j.commitOf(d.commit), Err: errors.New(rec.Error), Runs: j.runs, Builds: j.builds})
				}
				if consecutive > o.Retries {
					pendingConcl = &Conclusion{Status: StatusError, Pos: -1,
						Reason: fmt.Sprintf("infrastructure errors dominate: %d in a row, the last: %s; fix the cause and `kbisect bisect resume %s`", consecutive, lastErr, j.Dir)}
					continue
				}
				wait := o.RetryBackoff * time.Duration(1<<min(consecutive-1, 6))
				backoff = time.After(min(wait, time.Minute))
				continue
			}
			consecutive = 0
			rec.Type = RecRun
			if d.revert {
				rec.Type = RecRevert
			}
			if err := j.append(rec); err != nil {
				return nil, err
			}
			j.updateCosts()
			if progress != nil {
				best, p := j.core.Search.Best()
				progress(Progress{Phase: j.phase(d.revert), Seq: d.seq, Commit: j.commitOf(d.commit), Pos: j.index[d.commit], N: len(j.commits),
					Verdict: d.out.Verdict, Elapsed: d.out.Elapsed, Best: j.commits[best], BestP: p, Runs: j.runs, Builds: j.builds})
			}
		case <-backoff:
			backoff = nil
		case <-cancelled:
			// Stop the runs in flight; their results are discarded.
			cancelRuns()
			cancelled, backoff = nil, nil
		}
	}
}

func (j *Job) drain(results chan runDone, inflight map[int]Request) {
	for len(inflight) > 0 {
		d := <-results
		delete(inflight, d.worker)
	}
}

func (j *Job) commitOf(h string) Commit {
	if i, ok := j.index[h]; ok {
		return j.commits[i]
	}
	return Commit{Hash: h}
}

func (j *Job) phase(revert bool) string {
	if revert {
		return "revert"
	}
	if _, f, _ := j.core.Search.Stat(len(j.commits) - 1); f == 0 {
		return "endpoint"
	}
	return "search"
}

// next is Core.Next with the engine's own limits, and the revert check.
func (j *Job) next(pending []Request) (Request, *Conclusion, bool) {
	o := j.Spec.Options
	s := j.core.Search
	bad := len(j.commits) - 1
	if _, f, _ := s.Stat(bad); f == 0 && o.Unit == UnitRuns && o.BudgetRuns <= 0 && o.Budget > 0 && j.badTime >= o.Budget.Minutes() {
		// Runs mode with a time budget for the endpoint.
		perHour := -math.Log(0.05) / j.badTime * 60
		runs, _, _ := s.Stat(bad)
		return Request{}, &Conclusion{Status: StatusNoRegression, Pos: bad, Lo: bad, Hi: bad,
			Reason: fmt.Sprintf("bad did not fail in %s of testing (%d runs): it fails at a rate below %.2g per hour, or %.2g%% of runs (95%% confidence); raise --budget, or check the test", fmtMinutes(j.badTime), runs, perHour, 100*(1-math.Pow(0.05, 1/float64(max(runs, 1)))))}, false
	}
	if j.revertPhase() {
		return j.nextRevert(pending)
	}
	if f := j.fails(bad); f > 0 {
		if o.MaxRuns > 0 && j.runs >= o.MaxRuns {
			pos, p := s.Best()
			return Request{}, &Conclusion{Status: StatusInconclusive, Pos: pos, Lo: pos, Hi: pos, Confidence: p,
				Reason: fmt.Sprintf("--max-runs %d reached before any commit reached %.3g", o.MaxRuns, o.Confidence)}, false
		}
		if o.MaxTime > 0 && j.testMin >= o.MaxTime.Minutes() {
			pos, p := s.Best()
			return Request{}, &Conclusion{Status: StatusInconclusive, Pos: pos, Lo: pos, Hi: pos, Confidence: p,
				Reason: fmt.Sprintf("--max-time %s of testing reached before any commit reached %.3g", o.MaxTime, o.Confidence)}, false
		}
	}
	req, c := j.core.Next(pending)
	return req, c, false
}

func (j *Job) fails(pos int) int {
	_, f, _ := j.core.Search.Stat(pos)
	return int(f)
}

// afterConclusion expands a merge culprit, starts the revert check, or
// finishes the bisection. It returns the result when finished.
func (j *Job) afterConclusion(ctx context.Context, c *Conclusion, tester Tester) (*Result, error) {
	if c.Status == StatusFound && !j.revertPhase() {
		culprit := j.commits[c.Pos]
		if culprit.IsMerge() && !j.expanded[culprit.Hash] {
			side, err := j.hist.Expand(ctx, culprit)
			if err != nil {
				return nil, err
			}
			if err := j.append(Record{Type: RecExpand, Commit: culprit.Hash, Expanded: side}); err != nil {
				return nil, err
			}
			if len(side) > 0 {
				return nil, nil
			}
		}
		if j.Spec.Options.VerifyRevert {
			if _, ok := tester.(RevertTester); ok {
				j.revertCulprit = c
				return nil, nil
			}
		}
	}
	if j.revertPhase() && c.Status == "" {
		c = j.revertCulprit
	}
	return j.finish(c, tester)
}

func (j *Job) revertPhase() bool { return j.revertCulprit != nil }

// revertRuns sums the revert runs of culprit so far.
func (j *Job) revertRuns(culprit string) (runs, fails, skips int, minutes float64, reason string) {
	for _, r := range j.revert {
		if r.Commit != culprit {
			continue
		}
		switch r.Verdict {
		case Skip:
			skips++
			reason = r.Reason
		case Fail:
			fails++
			runs++
			reason = r.Reason
		default:
			runs++
		}
		minutes += r.Elapsed / 60
	}
	return
}

// revertNeed is the test the reverted bad needs: enough that bad itself
// would have failed with probability 0.99 at the estimated rate.
func (j *Job) revertNeed() float64 {
	rate := j.core.Search.RateEstimate()
	if j.Spec.Options.Unit == UnitTime {
		need := math.Log(100) / math.Max(rate, 1e-9)
		if b := j.core.Plan.EndpointBudget; need > b {
			need = b
		}
		return need
	}
	if rate >= 1 {
		return 1
	}
	need := math.Ceil(math.Log(0.01) / math.Log1p(-math.Max(rate, 1e-6)))
	return math.Min(need, 1000)
}

func (j *Job) nextRevert(pending []Request) (Request, *Conclusion, bool) {
	c := j.revertCulprit
	culprit := j.commits[c.Pos].Hash
	runs, fails, skips, minutes, _ := j.revertRuns(culprit)
	done := float64(runs)
	if j.Spec.Options.Unit == UnitTime {
		done = minutes
	}
	for _, p := range pending {
		done += p.Exposure
	}
	need := j.revertNeed()
	if fails > 0 || skips > 0 || done >= need {
		if len(pending) > 0 {
			return Request{Pos: -1}, nil, false
		}
		return Request{}, &Conclusion{}, false
	}
	e := 1.0
	if j.Spec.Options.Unit == UnitTime {
		e = math.Min(j.core.Plan.RunMax, need-done)
	}
	return Request{Pos: c.Pos, Exposure: e}, nil, true
}

// finish writes the result to the journal.
func (j *Job) finish(c *Conclusion, tester Tester) (*Result, error) {
	res := j.result(c)
	if j.Spec.Options.VerifyRevert && res.Status == StatusFound {
		if _, ok := tester.(RevertTester); !ok {
			res.Revert = &RevertResult{Verdict: "unsupported", Reason: "this test cannot test a revert"}
		}
	}
	if err := j.append(Record{Type: RecFinish, Result: res}); err != nil {
		return nil, err
	}
	j.revertCulprit = nil
	return res, nil
}

// result builds the Result for conclusion c (nil: the state so far).
func (j *Job) result(c *Conclusion) *Result {
	s := j.core.Search
	res := &Result{
		Runs: j.runs, Builds: j.builds, Skips: j.skips, InfraErrors: j.infra, LostRuns: j.lost + len(j.open),
		TestSeconds: j.testMin * 60, BuildSecs: j.buildMin * 60,
		Rate: s.RateEstimate(), Strategy: j.Spec.Options.Strategy,
		Good: j.Spec.Good, Bad: j.Spec.Bad, Job: j.Dir,
	}
	res.RateUnit = "per run"
	if j.Spec.Options.Unit == UnitTime {
		res.RateUnit = "per minute"
	}
	if c == nil {
		pos, p := s.Best()
		res.Status = "running"
		res.Culprit, res.Subject, res.Confidence = j.commits[pos].Hash, j.commits[pos].Subject, p
		return res
	}
	res.Status, res.Reason, res.Confidence = c.Status, c.Reason, c.Confidence
	if c.Pos < 0 {
		pos, p := s.Best()
		res.Confidence = p
		res.Candidates = []string{j.commits[pos].Hash}
		return res
	}
	switch c.Status {
	case StatusFound:
		cu := j.commits[c.Pos]
		res.Culprit, res.Subject = cu.Hash, cu.Subject
		res.Flags = j.flags(c.Pos)
		if j.Spec.Options.VerifyRevert {
			if runs, fails, skips, minutes, reason := j.revertRuns(cu.Hash); runs+skips > 0 {
				rr := &RevertResult{Runs: runs, Fails: fails, Minutes: minutes}
				switch {
				case skips > 0:
					rr.Verdict, rr.Reason = "does-not-apply", reason
				case fails > 0:
					rr.Verdict = "still-fails"
					rr.Reason = "bad with the culprit reverted still fails: the culprit alone does not explain the failure"
				default:
					rr.Verdict = "fixed"
					rr.Reason = fmt.Sprintf("bad with the culprit reverted passed %s where bad fails with probability 0.99", j.fmtExposure(j.revertNeed()))
				}
				res.Revert = rr
			}
		}
	case StatusNoRegression:
		// nothing to name
	default:
		if c.Lo < c.Hi {
			for i := c.Lo; i <= c.Hi; i++ {
				res.Candidates = append(res.Candidates, j.commits[i].Hash)
			}
		} else if c.Pos > 0 {
			res.Candidates = []string{j.commits[c.Pos].Hash}
		}
	}
	return res
}

func (j *Job) fmtExposure(x float64) string {
	if j.Spec.Options.Unit == UnitTime {
		return fmtMinutes(x)
	}
	return fmt.Sprintf("%.0f runs", x)
}

// flags warns about a culprit at pos.
func (j *Job) flags(pos int) []string {
	c := j.commits[pos]
	var out []string
	if c.IsMerge() {
		out = append(out, "merge")
	}
	for _, t := range c.Tags {
		out = append(out, "tag:"+t)
	}
	if pos > 0 {
		if a, b := j.sig[c.Hash], j.sig[j.commits[pos-1].Hash]; a != "" && a == b {
			out = append(out, "same-binary-as-parent")
		}
	}
	sort.Strings(out[min(len(out), 1):])
	return out
}

// Status returns the result if finished, else the state so far (status
// "running" when another process holds the job, "interrupted" otherwise).
func (j *Job) Status() *Result {
	if j.finished != nil {
		return j.finished
	}
	r := j.result(nil)
	if !Locked(j.Dir) && j.lock == nil {
		r.Status = "interrupted"
	}
	return r
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// DescribeCommit formats a commit for people: short hash and subject.
func DescribeCommit(c Commit) string {
	if c.Subject == "" {
		return c.Short()
	}
	return c.Short() + " " + strings.TrimSpace(c.Subject)
}
