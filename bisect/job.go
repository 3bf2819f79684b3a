package bisect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/gitrepo"
)

// ErrInterrupted is returned by Run when its context is cancelled; the
// journal is consistent and the job can be resumed.
var ErrInterrupted = errors.New("bisection interrupted")

// JobExistsError is returned by Create for a directory that already holds
// a bisection: the same one (Same: it can be resumed) or another.
type JobExistsError struct {
	Dir string
	// Same says the directory holds this bisection (same repository,
	// range and test command).
	Same bool
	// Spec is the bisection the directory holds.
	Spec JobSpec
}

func (e *JobExistsError) Error() string {
	if e.Same {
		return fmt.Sprintf("job directory %s already holds this bisection", e.Dir)
	}
	return fmt.Sprintf("job directory %s belongs to another bisection (%s, good %s, bad %s)", e.Dir, e.Spec.Repo, gitrepo.Short(e.Spec.Good), gitrepo.Short(e.Spec.Bad))
}

const commitsName = "commits.json"

// Job is a bisection in its job directory.
type Job struct {
	Dir  string
	Spec JobSpec

	hist    History
	repo    *gitrepo.Repo // the history's repository, when known
	commits []Commit
	index   map[string]int
	core    *Core
	journal *Journal
	lock    *Lock

	records   []Record
	nextSeq   int
	open      map[int]bool // begun, not completed
	runs      int
	others    int // runs that failed with another signature
	builds    int
	skips     int
	infra     int
	lost      int
	testMin   float64
	buildMin  float64
	clock     clock // measured wall time: the planner's costs
	sig       map[string]string
	expanded  map[string]bool
	revert    []Record
	finished  *Result
	posterior [][]float64 // binned posterior after every run (reports)
	bestP     []float64   // probability of the most probable commit after every run
	keepHist  bool
	// detail is the culprit's, read once for the reports (culpritDetail).
	detail  *CulpritDetail
	badTime float64 // minutes of test at bad before its first failure
	// longestPass is the longest run that passed (runLimit).
	longestPass time.Duration
	// revertCulprit is the conclusion being checked by reverting it.
	revertCulprit *Conclusion
}

// Create starts a new bisection in dir for spec over hist, taking the job
// directory's lock. It refuses a directory that already holds a
// bisection.
func Create(dir string, spec JobSpec, hist History) (*Job, error) {
	if err := spec.Options.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("job directory %s: %w", dir, err)
	}
	_, statErr := os.Stat(abs)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("%w: job directory %s: %w", ErrStorage, dir, err)
	}
	lock, err := LockJob(abs)
	if err != nil {
		if created {
			os.RemoveAll(abs)
		}
		return nil, err
	}
	if recs, err := ReadJournal(abs); err == nil {
		lock.Unlock()
		old := recs[0].Spec
		same := old.Repo == spec.Repo && old.Good == spec.Good && old.Bad == spec.Bad && old.Exec == spec.Exec
		return nil, &JobExistsError{Dir: abs, Same: same, Spec: *old}
	} else if _, serr := os.Stat(filepath.Join(abs, JournalName)); serr == nil {
		lock.Unlock()
		return nil, fmt.Errorf("job directory %s: %w", abs, err)
	}
	spec.Version = FormatVersion
	commits := hist.Commits()
	// A job that cannot be started leaves nothing behind.
	undo := func() {
		for _, name := range []string{JournalName, commitsName, lockName} {
			os.Remove(filepath.Join(abs, name))
		}
		if created {
			os.RemoveAll(abs)
		}
	}
	if err := fsutil.WriteFile(filepath.Join(abs, commitsName), mustJSON(commits), 0o644); err != nil {
		lock.Unlock()
		undo()
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	j, err := newJob(abs, spec, commits, hist)
	if err != nil {
		lock.Unlock()
		undo()
		return nil, err
	}
	if err := j.take(lock); err != nil {
		undo()
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if err := j.append(Record{Type: RecStart, Spec: &j.Spec, PID: os.Getpid()}); err != nil {
		j.Close()
		undo()
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
	if err := j.take(lock); err != nil {
		return nil, err
	}
	return j, nil
}

// take gives the job its directory's lock and opens its journal for
// appending; on failure the lock is released.
func (j *Job) take(lock *Lock) error {
	journal, err := OpenJournal(j.Dir)
	if err != nil {
		lock.Unlock()
		return err
	}
	j.lock, j.journal = lock, journal
	return nil
}

// ResumeDir takes the bisection in dir over as Resume does, with the
// history of its repository (which must still hold the range).
func ResumeDir(ctx context.Context, dir string) (*Job, error) {
	probe, err := Open(dir)
	if err != nil {
		return nil, err
	}
	spec := probe.Spec
	repo, err := gitrepo.Open(ctx, spec.Repo)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", dir, err)
	}
	hist, err := LoadJobHistory(ctx, repo, spec)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", dir, err)
	}
	j, err := Resume(dir, hist)
	if err != nil {
		return nil, err
	}
	// A fix bisection's history is reversed, no GitHistory: the
	// repository is kept apart.
	j.repo = repo
	return j, nil
}

// Repo is the repository of the job's history, when it was resumed with
// ResumeDir or created with a GitHistory; nil otherwise.
func (j *Job) Repo() *gitrepo.Repo {
	if j.repo != nil {
		return j.repo
	}
	if h, ok := j.hist.(*GitHistory); ok {
		return h.Repo()
	}
	return nil
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
	if v := recs[0].Spec.Version; v > FormatVersion {
		return nil, fmt.Errorf("job directory %s: format version %d, written by a newer kbisect (this one reads up to %d): use that kbisect", abs, v, FormatVersion)
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

func newJob(dir string, spec JobSpec, commits []Commit, hist History) (*Job, error) {
	if err := spec.Options.settle(); err != nil {
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
		Signature:  o.Signature,
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
			j.buildMin += r.BuildTime / 60
		}
		j.clock.add(r, !j.core.Search.Built(pos), j.Spec.Options.Unit == UnitTime)
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
		if r.Verdict == Pass {
			j.longestPass = max(j.longestPass, time.Duration(r.Elapsed*float64(time.Second)))
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
		if !j.core.Observe(pos, r.Verdict == Fail, r.FailSig, exp, j.costOf(r)) {
			j.others++
		}
		if j.keepHist {
			j.posterior = append(j.posterior, binPosterior(j.core.Search.Posterior(), reportBins))
			_, bp := j.core.Search.Best()
			j.bestP = append(j.bestP, bp)
		}
	case RecInfra:
		delete(j.open, r.Seq)
		j.infra++
	case RecCancel:
		delete(j.open, r.Seq)
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
	j.core.Plan.Costs = j.clock.costs(j.Spec.Options)
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

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}
