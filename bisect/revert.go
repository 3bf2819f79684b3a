package bisect

import (
	"math"
)

// RevertResult is the outcome of testing bad with the culprit reverted.
type RevertResult struct {
	// Verdict is "fixed" (no failure where bad would have failed with
	// probability 0.99), "still-fails", "does-not-apply" or "unsupported".
	Verdict string `json:"verdict"`
	Runs    int    `json:"runs"`
	Fails   int    `json:"fails"`
	// TestSeconds is the test time of the revert check's runs.
	TestSeconds float64 `json:"test_seconds,omitempty"`
	Reason      string  `json:"reason,omitempty"`
}

func (j *Job) revertPhase() bool { return j.revertCulprit != nil }

// revertRuns sums the revert runs of culprit so far.
func (j *Job) revertRuns(culprit string) (runs, fails, skips int, minutes float64, reason string) {
	for _, r := range j.revert {
		if r.Commit != culprit {
			continue
		}
		switch {
		case r.Verdict == Skip:
			skips++
			reason = r.Reason
		case r.Verdict == Fail && !j.core.Matches(r.FailSig):
			continue // another bug: neither pass nor fail
		case r.Verdict == Fail:
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
