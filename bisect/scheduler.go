package bisect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// estimate is what the search still needs, at the rate the job's runs
// have gained so far, in two measures: the bits of uncertainty left in the
// posterior above what the confidence leaves (the search narrowing the
// range), and the bits the best candidate still lacks to reach the
// confidence, -log2(1-P) (the search confirming it: passes of a sporadic
// bug gain little each). The first underestimates (the last bits cost the
// most), the second overestimates (early runs gain little on it): their
// geometric mean, within a factor of about two in TestProgressEstimate,
// each run at the wall time
// the job's runs and builds have taken on average. A rough figure, none
// before the search has gained anything.
func (j *Job) estimate() (runs int, left time.Duration) {
	n := len(j.commits) - 1
	if n < 2 || j.runs == 0 || j.clock.runs == 0 {
		return 0, 0
	}
	h := 0.0
	for _, p := range j.core.Search.Posterior() {
		if p > 0 {
			h -= p * math.Log2(p)
		}
	}
	o := j.Spec.Options
	o.defaults()
	lg := math.Log2(float64(n))
	perRunGain := func(start, now, end float64) float64 {
		gained := now - start
		if gained <= 0 || now >= end {
			return 0
		}
		return (end - now) / (gained / float64(j.runs))
	}
	_, best := j.core.Search.Best()
	confirm := func(p float64) float64 { return -math.Log2(math.Max(1-p, 1e-12)) }
	narrow := perRunGain(-lg, -h, -(1-o.Confidence)*lg)
	confirming := perRunGain(confirm(1/float64(n)), confirm(best), confirm(o.Confidence))
	r := math.Max(narrow, confirming)
	if narrow > 0 && confirming > 0 {
		r = math.Sqrt(narrow * confirming)
	}
	if r <= 0 {
		return 0, 0
	}
	runs = int(math.Ceil(r))
	var built float64
	for _, b := range j.clock.builds {
		built += b
	}
	perRun := (j.clock.wall + built) / float64(j.clock.runs) // minutes
	return runs, time.Duration(float64(runs) * perRun * float64(time.Minute))
}

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
// consistent). progress, if not nil, is called when a run starts and
// after every run.
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
	// The runs' context: cancelled to stop the runs in flight, and made
	// again after.
	newRunCtx := func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }
	runCtx, cancelRuns := newRunCtx()
	defer func() { cancelRuns() }()
	cancelled := ctx.Done()
	// cutting says the search concluded with runs in flight: they are
	// cancelled (wall time), and those cut short are journaled as such.
	cutting := false

	start := func(w int, req Request, revert bool) error {
		seq := j.nextSeq
		commit := j.commits[req.Pos].Hash
		budget := j.runLimit()
		if o.Unit == UnitTime {
			budget = time.Duration(req.Exposure * float64(time.Minute)).Round(time.Millisecond)
		}
		if err := j.append(Record{Type: RecBegin, Seq: seq, Worker: w, Commit: commit, Budget: budget.Seconds()}); err != nil {
			return err
		}
		inflight[w] = req
		if progress != nil {
			progress(Progress{Phase: j.phase(revert), Seq: seq, Commit: j.commits[req.Pos], Pos: req.Pos, N: len(j.commits),
				Started: true, Budget: budget, Runs: j.runs, Builds: j.builds})
		}
		rctx := withRunInfo(runCtx, RunInfo{Seq: seq, Worker: w, JobDir: j.Dir})
		go func() {
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
				if concl.Status != StatusError && len(inflight) > 0 {
					// Wall time: the conclusion holds on the runs seen;
					// waiting for those in flight would only delay it.
					cutting = true
					cancelRuns()
				}
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
				return nil, fmt.Errorf("%s: %w", j.Dir, ErrInterrupted)
			}
			if pendingConcl != nil {
				c := pendingConcl
				pendingConcl = nil
				if cutting {
					cutting = false
					runCtx, cancelRuns = newRunCtx()
				}
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
			if cutting && (d.err != nil || d.out.Verdict == Error) {
				if err := j.append(Record{Type: RecCancel, Seq: d.seq, Worker: d.worker, Commit: d.commit, Wall: d.wall.Seconds()}); err != nil {
					return nil, err
				}
				continue
			}
			rec := Record{Seq: d.seq, Worker: d.worker, Commit: d.commit, Budget: d.budget.Seconds(),
				Wall: d.wall.Seconds(), Elapsed: d.out.Elapsed.Seconds(), Built: d.out.Built,
				BuildTime: d.out.BuildTime.Seconds(), Signature: d.out.Signature, FailSig: d.out.FailSig, Reason: d.out.Reason,
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
					cancelRuns()
					j.drain(results, inflight)
					return nil, err
				}
				consecutive++
				lastErr = rec.Error
				if progress != nil {
					progress(Progress{Phase: j.phase(d.revert), Seq: d.seq, Commit: j.commitOf(d.commit), Err: errors.New(rec.Error), Runs: j.runs, Builds: j.builds})
				}
				if consecutive > o.Retries {
					pendingConcl = &Conclusion{Status: StatusError, Pos: -1,
						Reason: fmt.Sprintf("infrastructure errors dominate: %d in a row, the last: %s", consecutive, lastErr)}
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
				cancelRuns()
				j.drain(results, inflight)
				return nil, err
			}
			j.updateCosts()
			if progress != nil {
				best, p := j.core.Search.Best()
				leftRuns, leftTime := j.estimate()
				progress(Progress{Phase: j.phase(d.revert), Seq: d.seq, Commit: j.commitOf(d.commit), Pos: j.index[d.commit], N: len(j.commits),
					Verdict: d.out.Verdict, FailSig: d.out.FailSig, Other: d.out.Verdict == Fail && !j.core.Matches(d.out.FailSig),
					Elapsed: d.out.Elapsed, Best: j.commits[best], BestP: p, Runs: j.runs, Builds: j.builds,
					LeftRuns: leftRuns, LeftTime: leftTime})
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

// runLimit is what a run is given in runs mode: its time limit, past which
// it is an infrastructure error. That is --timeout; without it, for a
// command, ten times the longest pass so far (at least a minute), and
// before any pass the endpoint check's test time (--budget 30m) or an
// hour; for the kernel pipeline, whose runs last what they are given,
// --run-time.
func (j *Job) runLimit() time.Duration {
	o := j.Spec.Options
	switch {
	case o.Timeout > 0:
		return o.Timeout
	case j.Spec.Exec == "":
		return o.RunTime
	case j.longestPass > 0:
		return max(10*j.longestPass, time.Minute)
	case o.Budget > 0:
		return o.Budget
	default:
		return time.Hour
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
				Reason: fmt.Sprintf("the limit of %d runs reached before any commit reached %.3g", o.MaxRuns, o.Confidence)}, false
		}
		if o.MaxTime > 0 && j.testMin >= o.MaxTime.Minutes() {
			pos, p := s.Best()
			return Request{}, &Conclusion{Status: StatusInconclusive, Pos: pos, Lo: pos, Hi: pos, Confidence: p,
				Reason: fmt.Sprintf("the limit of %s of testing reached before any commit reached %.3g", o.MaxTime, o.Confidence)}, false
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
