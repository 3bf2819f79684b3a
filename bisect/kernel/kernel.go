// Package kernel is the bisection's kernel Tester: each test builds the
// commit (cached) and runs the pair test on it. It adapts
// testcases.CommitTest to bisect.Tester, mapping what the pipeline found to
// the verdicts the search understands.
package kernel

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/testcases"
)

// Tester tests commits by building and running them.
type Tester struct {
	CT *testcases.CommitTest
	// OnResult, if set, sees every commit result (for progress and phase
	// timings).
	OnResult func(commit string, r *testcases.CommitResult)
}

// Test implements bisect.Tester. A commit that does not build, or whose
// kernel panics at boot, is a Skip: it cannot be tested. Other
// infrastructure failures are errors, retried by the search.
func (t *Tester) Test(ctx context.Context, commit string, budget time.Duration) (bisect.Outcome, error) {
	res, err := t.CT.Test(ctx, commit, budget)
	if err != nil {
		return bisect.Outcome{}, err
	}
	if t.OnResult != nil {
		t.OnResult(commit, res)
	}
	if res.BuildError != nil {
		return bisect.Outcome{Verdict: bisect.Skip, Built: true, Reason: "build failed: " + res.BuildError.Error()}, nil
	}
	a, r := res.Artifact, res.Report
	out := bisect.Outcome{
		Built:     !a.CacheHit,
		Signature: a.Signature,
		Reason:    r.Reason,
		Elapsed:   time.Duration(r.TestSeconds * float64(time.Second)),
	}
	if out.Built {
		out.BuildTime = a.Elapsed
	}
	out.Evidence, _ = json.Marshal(r)
	switch r.Verdict {
	case testcases.Pass:
		out.Verdict = bisect.Pass
	case testcases.Fail:
		out.Verdict = bisect.Fail
	default:
		out.Verdict = bisect.Error
		if r.KernelPanicked() {
			out.Verdict = bisect.Skip
			out.Reason = "kernel panics: " + r.Reason
		}
	}
	if out.Elapsed <= 0 || out.Verdict != bisect.Fail {
		out.Elapsed = budget
	}
	return out, nil
}
