// Package kernel is the bisection's kernel Tester: each test runs the
// commit pipeline (testcases.CommitTest: build, cached; boot the pair;
// judge) on the commit, and maps its verdict to the search's.
package kernel

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/testcases"
)

// Pipeline tests one commit: a *testcases.CommitTest.
type Pipeline interface {
	Test(ctx context.Context, rev string, duration time.Duration) *testcases.CommitResult
}

// Tester tests commits by building and running them.
type Tester struct {
	Pipeline Pipeline
	// OnResult, if set, sees every commit result (for progress and phase
	// timings).
	OnResult func(commit string, r *testcases.CommitResult)
}

// Test implements bisect.Tester. The pipeline's Skip (the commit does not
// build, or its kernel panics) is the search's Skip; its Error is an
// infrastructure error, retried by the search: returned as an error when
// no run reported it, else as an Error outcome with the run's report as
// evidence.
func (t *Tester) Test(ctx context.Context, commit string, budget time.Duration) (bisect.Outcome, error) {
	res := t.Pipeline.Test(ctx, commit, budget)
	if t.OnResult != nil {
		t.OnResult(commit, res)
	}
	if res.Verdict == testcases.Error && res.Report == nil {
		return bisect.Outcome{}, res.Err
	}
	out := bisect.Outcome{Verdict: verdicts[res.Verdict], Reason: res.Reason}
	if out.Verdict == "" {
		out.Verdict = bisect.Error
	}
	a, r := res.Artifact, res.Report
	if a == nil {
		// It did not build: building it was the cost.
		out.Built = true
		return out, nil
	}
	out.Built, out.Signature = !a.CacheHit, a.Signature
	if out.Built {
		out.BuildTime = a.Elapsed
	}
	out.Evidence, _ = json.Marshal(r)
	// A verdict's exposure is counted in traffic, not wall time (see
	// testcases.Report.Exposure); a run without one cost its budget.
	out.Elapsed = budget
	if out.Verdict == bisect.Pass || out.Verdict == bisect.Fail {
		out.Elapsed = r.Exposure()
	}
	if out.Verdict == bisect.Fail {
		out.FailSig = FailSignature(r)
	}
	return out, nil
}

var verdicts = map[testcases.Verdict]bisect.Verdict{
	testcases.Pass:  bisect.Pass,
	testcases.Fail:  bisect.Fail,
	testcases.Skip:  bisect.Skip,
	testcases.Error: bisect.Error,
}
