// Package bisect finds the commit that introduced a bug that shows up only
// sometimes. A fail is proof that a commit is bad; a pass is only evidence
// that it is good, weighted by how often a bad commit fails. The default
// strategy keeps a posterior over which commit is the first bad one,
// integrates over the unknown detection rate (per run, or per minute of a
// stress test that stops at its first failure), chooses each next test for
// the information it brings per unit of cost (a build costs far more than
// another run of a built commit), and stops when one commit holds the
// confidence asked for.
//
// The package builds and boots nothing: it calls a Tester. A bisection
// lives in a job directory with an append-only, fsynced journal, so that it
// can be resumed after a crash, and from which the status, a `git bisect
// log` and reports are made.
package bisect

import (
	"context"
	"encoding/json"
	"path/filepath"
	"time"
)

// Verdict is the outcome of one test run.
type Verdict string

// Verdicts. Error means the infrastructure failed: it says nothing about the
// bug and is retried, never counted as Pass or Fail.
const (
	Pass  Verdict = "pass"
	Fail  Verdict = "fail"
	Skip  Verdict = "skip" // the commit cannot be tested (build or boot failure)
	Error Verdict = "error"
)

// Outcome is what a Tester reports for one run.
type Outcome struct {
	Verdict Verdict
	// Elapsed is the test time actually used: a time-based stress test may
	// stop at its first failure, before its budget.
	Elapsed time.Duration
	// Built says whether this call had to build the commit, and BuildTime
	// what the build cost.
	Built     bool
	BuildTime time.Duration
	// Signature identifies the binary built (may be empty): a culprit that
	// builds to the same binary as its parent is flagged.
	Signature string
	// FailSig names the failure of a Fail (may be empty): the bisection
	// bisects one failure signature (see Options.Signature), and failures
	// of others count as neither pass nor fail. Not to be confused with
	// Signature, the binary's.
	FailSig string
	Reason  string
	// Evidence is the run's own record, e.g. `kbisect run --json` output.
	Evidence json.RawMessage
}

// Tester tests one commit. budget is the length of the run the search asks
// for (time mode), or the time limit of one run (runs mode). A returned
// error is an infrastructure error: the run is retried and never counted as
// a pass or a fail.
type Tester interface {
	Test(ctx context.Context, commit string, budget time.Duration) (Outcome, error)
}

// RevertTester is a Tester that can test bad with the culprit reverted on
// top of it (for --verify-revert). A revert that does not apply is a Skip.
type RevertTester interface {
	TestRevert(ctx context.Context, culprit, bad string, budget time.Duration) (Outcome, error)
}

// RunInfo describes the run a Tester is called for; see RunFromContext.
type RunInfo struct {
	Seq    int    // the run's number in the journal
	Worker int    // which of the --parallel workers (0-based)
	JobDir string // the job directory
}

type runInfoKey struct{}

// RunFromContext returns the RunInfo of the run ctx was made for.
func RunFromContext(ctx context.Context) (RunInfo, bool) {
	ri, ok := ctx.Value(runInfoKey{}).(RunInfo)
	return ri, ok
}

// StateDir is where a Tester keeps its state about the run ctx was made
// for across processes, so that a resumed bisection finds it: name in the
// job directory; "" outside a bisection.
func StateDir(ctx context.Context, name string) string {
	if ri, ok := RunFromContext(ctx); ok && ri.JobDir != "" {
		return filepath.Join(ri.JobDir, name)
	}
	return ""
}

func withRunInfo(ctx context.Context, ri RunInfo) context.Context {
	return context.WithValue(ctx, runInfoKey{}, ri)
}
