package bisect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTester is an in-process oracle: commits at or after culprit fail a
// run with probability rate (runs), or at rate per minute of test (time).
type fakeTester struct {
	mu      sync.Mutex
	index   map[string]int
	culprit int
	rate    float64
	time    bool
	rng     *rand.Rand
	skip    map[int]bool
	errs    int // return this many infrastructure errors first
	always  bool
	sig     map[int]string
	// revertRate is the failure rate of bad with the culprit reverted.
	revertRate float64
	calls      []int // seq of every completed call
	onCall     func(n int)
	n          int
	// A second bug (culprit2 > 0): commits from culprit2 on fail a run
	// with probability rate2, with the failure signature "B" (the first
	// bug's is "A"); its failures come first.
	culprit2 int
	rate2    float64
	// failSig, when set, is the signature of the failures of the one bug.
	failSig string
	// delay makes every run take this long (cancelled with its context).
	delay time.Duration
}

func newFake(commits []Commit, culprit int, rate float64, seed uint64) *fakeTester {
	f := &fakeTester{index: map[string]int{}, culprit: culprit, rate: rate, rng: rand.New(rand.NewPCG(seed, 7)), skip: map[int]bool{}, sig: map[int]string{}}
	for i, c := range commits {
		f.index[c.Hash] = i
	}
	return f
}

func (f *fakeTester) outcome(bad bool, rate float64, budget time.Duration) Outcome {
	if !bad {
		rate = 0
	}
	if f.time {
		if rate <= 0 {
			return Outcome{Verdict: Pass, Elapsed: budget}
		}
		t := time.Duration(f.rng.ExpFloat64() / rate * float64(time.Minute))
		if t < budget {
			return Outcome{Verdict: Fail, Elapsed: t}
		}
		return Outcome{Verdict: Pass, Elapsed: budget}
	}
	if f.rng.Float64() < rate {
		return Outcome{Verdict: Fail, Elapsed: 20 * time.Millisecond}
	}
	return Outcome{Verdict: Pass, Elapsed: 20 * time.Millisecond}
}

func (f *fakeTester) Test(ctx context.Context, commit string, budget time.Duration) (Outcome, error) {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.onCall != nil {
		f.onCall(f.n)
	}
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	if f.always || f.errs > 0 {
		f.errs--
		return Outcome{}, errors.New("fake infrastructure error")
	}
	pos := f.index[commit]
	ri, _ := RunFromContext(ctx)
	f.calls = append(f.calls, ri.Seq)
	if f.skip[pos] {
		return Outcome{Verdict: Skip, Reason: "does not build"}, nil
	}
	if f.culprit2 > 0 && pos >= f.culprit2 && f.rng.Float64() < f.rate2 {
		return Outcome{Verdict: Fail, FailSig: "B", Elapsed: 20 * time.Millisecond, Signature: f.sig[pos]}, nil
	}
	o := f.outcome(pos >= f.culprit, f.rate, budget)
	o.Signature = f.sig[pos]
	if o.Verdict == Fail && f.culprit2 > 0 {
		o.FailSig = "A"
	}
	if o.Verdict == Fail && f.failSig != "" {
		o.FailSig = f.failSig
	}
	return o, nil
}

type fakeRevert struct{ *fakeTester }

func (f fakeRevert) TestRevert(ctx context.Context, culprit, bad string, budget time.Duration) (Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ri, _ := RunFromContext(ctx)
	f.calls = append(f.calls, ri.Seq)
	return f.outcome(true, f.revertRate, budget), nil
}

func linear(n int) LinearHistory {
	h := make(LinearHistory, n)
	for i := range h {
		h[i] = Commit{Hash: fmt.Sprintf("%040x", i+1), Subject: fmt.Sprintf("commit %d", i)}
		if i > 0 {
			h[i].Parents = []string{h[i-1].Hash}
		}
	}
	return h
}

func testSpec(o Options) JobSpec {
	o.RetryBackoff = time.Millisecond
	return JobSpec{Repo: "/nonexistent/repo", Good: fmt.Sprintf("%040x", 1), Bad: "bad", Exec: "test", Options: o}
}

// checkJournal verifies the journal's invariants: run numbers are unique,
// and every run the tester completed and the journal recorded appears once.
func checkJournal(t *testing.T, dir string) []Record {
	t.Helper()
	recs, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, r := range recs {
		switch r.Type {
		case RecRun, RecInfra, RecRevert:
			if prev, dup := seen[r.Seq]; dup {
				t.Fatalf("run %d recorded twice (%s and %s)", r.Seq, prev, r.Type)
			}
			seen[r.Seq] = r.Type
		}
	}
	return recs
}

func TestJobFindsCulprit(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		culprit  int
		rate     float64
		opts     Options
		timeMode bool
	}{
		{"bayes runs p=0.5", 200, 77, 0.5, Options{}, false},
		{"bayes runs p=0.2", 120, 5, 0.2, Options{}, false},
		{"bayes culprit is bad", 64, 63, 0.5, Options{}, false},
		{"bayes culprit right after good", 64, 1, 0.5, Options{}, false},
		{"bayes time 0.2/min", 150, 100, 0.2, Options{Unit: UnitTime, RunTime: time.Minute}, true},
		{"bayes parallel 3", 300, 211, 0.4, Options{Parallel: 3}, false},
		{"classic:5 deterministic", 100, 42, 1, Options{Strategy: "classic:5"}, false},
		{"git-bisect deterministic", 100, 13, 1, Options{Strategy: "classic"}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist := linear(tc.n)
			dir := t.TempDir()
			tc.opts.Confidence = 0.999
			job, err := Create(dir, testSpec(tc.opts), hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			f := newFake(hist, tc.culprit, tc.rate, uint64(i+1))
			f.time = tc.timeMode
			var events int
			res, err := job.Run(context.Background(), f, func(Progress) { events++ })
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != StatusFound || res.Culprit != hist[tc.culprit].Hash {
				t.Fatalf("got %s %s (%.4g), want found %s; %s", res.Status, res.Culprit, res.Confidence, hist[tc.culprit].Hash, res.Reason)
			}
			if tc.opts.Strategy == "" && res.Confidence < 0.999 {
				t.Errorf("confidence %.4g below the 0.999 asked for", res.Confidence)
			}
			recs := checkJournal(t, dir)
			var runs int
			for _, r := range recs {
				if r.Type == RecRun {
					runs++
				}
			}
			if runs != res.Runs || runs != len(f.calls) || events < runs {
				t.Errorf("journal has %d runs, result says %d, tester did %d, %d progress events", runs, res.Runs, len(f.calls), events)
			}
			if last := recs[len(recs)-1]; last.Type != RecFinish {
				t.Errorf("journal ends with %q, want finish", last.Type)
			}
			if tc.timeMode && res.RateUnit != "per minute" {
				t.Errorf("rate unit %q in time mode", res.RateUnit)
			}
		})
	}
}

// TestJobResume interrupts a bisection mid-way, resumes it, and checks the
// answer and that no completed run was repeated.
func TestJobResume(t *testing.T) {
	hist := linear(300)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Confidence: 0.999}), hist)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(hist, 123, 0.4, 42)
	ctx, cancel := context.WithCancel(context.Background())
	f.onCall = func(n int) {
		if n == 25 {
			cancel() // this run is in flight: it is lost
		}
	}
	_, err = job.Run(ctx, f, nil)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	job.Close()
	before := checkJournal(t, dir)
	if before[len(before)-1].Type != RecInterrupt {
		t.Errorf("journal ends with %q, want interrupt", before[len(before)-1].Type)
	}
	if st, _ := Open(dir); st.Status().Status != "interrupted" {
		t.Errorf("status %q, want interrupted", st.Status().Status)
	}

	job, err = Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	f.onCall = nil
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFound || res.Culprit != hist[123].Hash {
		t.Fatalf("after resume: %s %s, want %s", res.Status, res.Culprit, hist[123].Hash)
	}
	recs := checkJournal(t, dir)
	// Every completed call is journaled exactly once.
	journaled := map[int]bool{}
	for _, r := range recs {
		if r.Type == RecRun {
			journaled[r.Seq] = true
		}
	}
	calls := map[int]bool{}
	for _, s := range f.calls {
		if calls[s] {
			t.Errorf("run %d done twice", s)
		}
		calls[s] = true
		if !journaled[s] {
			t.Errorf("run %d completed but not journaled", s)
		}
	}
	if len(journaled) != len(calls) {
		t.Errorf("%d runs journaled, %d completed", len(journaled), len(calls))
	}
	if res.Runs != len(journaled) {
		t.Errorf("result counts %d runs, journal %d", res.Runs, len(journaled))
	}
	// Resuming a finished job gives its result without running.
	job.Close()
	job2, err := Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job2.Close()
	n := len(f.calls)
	res2, err := job2.Run(context.Background(), f, nil)
	if err != nil || res2.Culprit != res.Culprit || len(f.calls) != n {
		t.Errorf("resume of a finished job: %v, %v, %d new runs", res2, err, len(f.calls)-n)
	}
}

func TestJobInfraErrors(t *testing.T) {
	hist := linear(50)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Retries: 2}), hist)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(hist, 20, 0.7, 3)
	f.errs = 2 // retried
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFound || res.Culprit != hist[20].Hash || res.InfraErrors != 2 {
		t.Fatalf("got %s %s with %d infra errors", res.Status, res.Culprit, res.InfraErrors)
	}
	job.Close()

	// Errors that never stop: the bisection says so, and resumes later.
	dir = t.TempDir()
	job, err = Create(dir, testSpec(Options{Retries: 2}), hist)
	if err != nil {
		t.Fatal(err)
	}
	f = newFake(hist, 20, 0.7, 3)
	f.always = true
	res, err = job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusError || !strings.Contains(res.Reason, "infrastructure errors dominate") || res.InfraErrors != 3 {
		t.Fatalf("got %+v", res)
	}
	job.Close()
	job, err = Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	f.always = false
	res, err = job.Run(context.Background(), f, nil)
	if err != nil || res.Status != StatusFound || res.Culprit != hist[20].Hash {
		t.Fatalf("resume after fixing the infrastructure: %+v, %v", res, err)
	}
}

func TestJobNoRegression(t *testing.T) {
	tests := []struct {
		name    string
		culprit int
		opts    Options
		want    string
	}{
		{"bad never fails, runs budget", 1 << 30, Options{BudgetRuns: 40}, "bad did not fail in 40 runs"},
		{"bad never fails, time budget", 1 << 30, Options{Budget: 2 * time.Second}, "bad did not fail in 2 s of testing"},
		{"good fails too", 0, Options{}, "good fails too"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist := linear(40)
			job, err := Create(t.TempDir(), testSpec(tc.opts), hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			f := newFake(hist, tc.culprit, 0.8, 5)
			res, err := job.Run(context.Background(), f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != StatusNoRegression || res.Culprit != "" || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("got %s %q, culprit %q; want no-regression saying %q", res.Status, res.Reason, res.Culprit, tc.want)
			}
		})
	}
}

func TestJobSkips(t *testing.T) {
	hist := linear(60)
	job, err := Create(t.TempDir(), testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	f := newFake(hist, 30, 0.9, 9)
	f.skip[30] = true // the culprit itself cannot be built
	f.skip[29] = true
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{hist[29].Hash, hist[30].Hash, hist[31].Hash}
	if res.Status != StatusInconclusive || strings.Join(res.Candidates, ",") != strings.Join(want, ",") {
		t.Fatalf("got %s %v (%s), want inconclusive among %v", res.Status, res.Candidates, res.Reason, want)
	}
	if res.Skips != 2 {
		t.Errorf("%d skips, want 2", res.Skips)
	}
}

func TestJobVerifyRevert(t *testing.T) {
	for _, tc := range []struct {
		name       string
		revertRate float64
		want       string
	}{{"revert fixes it", 0, "fixed"}, {"revert does not", 0.6, "still-fails"}} {
		t.Run(tc.name, func(t *testing.T) {
			hist := linear(80)
			job, err := Create(t.TempDir(), testSpec(Options{VerifyRevert: true}), hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			f := newFake(hist, 50, 0.6, 11)
			f.revertRate = tc.revertRate
			res, err := job.Run(context.Background(), fakeRevert{f}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Culprit != hist[50].Hash || res.Revert == nil || res.Revert.Verdict != tc.want {
				t.Fatalf("got %s, revert %+v; want revert %s", res.Culprit, res.Revert, tc.want)
			}
			if tc.want == "fixed" {
				// Enough runs that bad would have failed with p 0.99.
				if need := math.Log(0.01) / math.Log(1-res.Rate); float64(res.Revert.Runs) < need-1 {
					t.Errorf("revert check passed after %d runs; bad needs %.0f to fail with p 0.99", res.Revert.Runs, need)
				}
			}
		})
	}
	// A tester without revert support says so.
	hist := linear(30)
	job, err := Create(t.TempDir(), testSpec(Options{VerifyRevert: true}), hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Run(context.Background(), newFake(hist, 10, 0.9, 1), nil)
	if err != nil || res.Revert == nil || res.Revert.Verdict != "unsupported" {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestJobFlags(t *testing.T) {
	hist := linear(40)
	hist[25].Parents = append(hist[25].Parents, "f00d")
	hist[25].Tags = []string{"v1.0"}
	job, err := Create(t.TempDir(), testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	f := newFake(hist, 25, 0.9, 2)
	f.sig[24], f.sig[25] = "same", "same"
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Flags, ","); got != "merge,same-binary-as-parent,tag:v1.0" {
		t.Errorf("flags %q", got)
	}
}

// expandHistory expands the merge at position merge into side commits.
type expandHistory struct {
	LinearHistory
	merge int
	side  []Commit
}

func (h expandHistory) Expand(_ context.Context, c Commit) ([]Commit, error) {
	if c.Hash == h.LinearHistory[h.merge].Hash {
		return h.side, nil
	}
	return nil, nil
}

func TestJobExpandsMerge(t *testing.T) {
	hist := linear(64)
	hist[40].Parents = append(hist[40].Parents, "side")
	var side []Commit
	for i := 0; i < 20; i++ {
		side = append(side, Commit{Hash: fmt.Sprintf("5%039x", i), Subject: fmt.Sprintf("side %d", i)})
	}
	h := expandHistory{hist, 40, side}
	job, err := Create(t.TempDir(), testSpec(Options{}), h)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	// In the expanded order the side commits come before the merge; the
	// culprit is side commit 7, so the merge and everything after fail.
	all := append(append(append([]Commit{}, hist[:40]...), side...), hist[40:]...)
	f := newFake(all, 40+7, 0.8, 4)
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFound || res.Culprit != side[7].Hash {
		t.Fatalf("got %s %s, want side commit %s", res.Status, res.Culprit, side[7].Hash)
	}
	// The expansion survives a reopen.
	j2, err := Open(job.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(j2.Commits()) != len(all) || j2.Status().Culprit != side[7].Hash {
		t.Errorf("reopened job has %d commits, culprit %s", len(j2.Commits()), j2.Status().Culprit)
	}
}

func TestJobDirOwnership(t *testing.T) {
	hist := linear(10)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	// Another bisection while this one runs: refused by the lock.
	if _, err := Create(dir, testSpec(Options{}), hist); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second bisection in the same job dir: %v", err)
	}
	if _, err := Resume(dir, hist); !errors.Is(err, ErrLocked) {
		t.Errorf("resume while running: %v", err)
	}
	job.Close()
	if _, err := Create(dir, testSpec(Options{}), hist); err == nil || !strings.Contains(err.Error(), "already holds this bisection") {
		t.Errorf("same bisection again: %v", err)
	}
	other := testSpec(Options{})
	other.Repo = "/some/other/repo"
	if _, err := Create(dir, other, hist); err == nil || !strings.Contains(err.Error(), "belongs to another bisection") {
		t.Errorf("other bisection: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a kbisect job directory") {
		t.Errorf("empty dir: %v", err)
	}
}

func TestJournalTornLine(t *testing.T) {
	hist := linear(10)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	job.Close()
	// A crash in the middle of a write leaves half a line.
	f, err := os.OpenFile(filepath.Join(dir, JournalName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"type":"run","seq":1,"comm`)
	f.Close()
	job, err = Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Run(context.Background(), newFake(hist, 4, 1, 1), nil)
	job.Close()
	if err != nil || res.Culprit != hist[4].Hash {
		t.Fatalf("got %+v, %v", res, err)
	}
	if _, err := ReadJournal(dir); err != nil {
		t.Fatal(err)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"bayes", "bayes", false}, {"classic", "git-bisect", false}, {"classic:5", "classic:5", false},
		{"git-bisect", "git-bisect", false}, {"syzkaller", "syzkaller", false}, {"bisectkit", "bisectkit", false},
		{"classic:0", "", true}, {"classic:x", "", true}, {"bayes:3", "", true}, {"nope", "", true},
	} {
		sp, err := ParseStrategy(tc.in)
		if (err != nil) != tc.err || (err == nil && sp.String() != tc.want) {
			t.Errorf("ParseStrategy(%q) = %v, %v; want %q, error %v", tc.in, sp, err, tc.want, tc.err)
		}
	}
}

// TestJobFindsFix runs many fix bisections against an oracle whose commits
// before the fix fail at a rate unknown to the search (runs and time
// units): the fix named must be the true one in at least the share the
// confidence promises, and the confidence must not overstate it.
func TestJobFindsFix(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     float64
		timeMode bool
	}{
		{"runs p=0.5", 0.5, false},
		{"runs p=0.1", 0.1, false},
		{"time 0.3/min", 0.3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, trials = 64, 30
			right, sumConf := 0, 0.0
			for k := 0; k < trials; k++ {
				chron := linear(n) // oldest first, as git lists the range
				fix := 1 + int(uint64(k*37+11)%uint64(n-1))
				// The search runs from good (newest) back to bad (oldest).
				hist := reversed(chron)
				o := Options{Confidence: 0.99}
				if tc.timeMode {
					o.Unit, o.RunTime = UnitTime, time.Minute
				}
				spec := testSpec(o)
				spec.Find, spec.Good, spec.Bad = FindFix, chron[n-1].Hash, chron[0].Hash
				job, err := Create(t.TempDir(), spec, hist)
				if err != nil {
					t.Fatal(err)
				}
				// In search order the bug shows from position n-fix on.
				f := newFake(hist, n-fix, tc.rate, uint64(k+100))
				f.time = tc.timeMode
				res, err := job.Run(context.Background(), f, nil)
				job.Close()
				if err != nil {
					t.Fatal(err)
				}
				if res.Status != StatusFound || res.Find != FindFix {
					t.Fatalf("trial %d: %s (%s), want a fix found", k, res.Status, res.Reason)
				}
				sumConf += res.Confidence
				if res.Culprit == chron[fix].Hash {
					right++
				}
			}
			share, mean := float64(right)/trials, sumConf/trials
			t.Logf("%d of %d right, mean confidence %.3f", right, trials, mean)
			if share < 0.95 {
				t.Errorf("the fix was named right in %d of %d trials, want >= 95%%", right, trials)
			}
			if mean-share > 0.05 {
				t.Errorf("mean confidence %.3f overstates the share right %.3f", mean, share)
			}
		})
	}
}

// TestJobSignatures bisects a range with two bugs of different failure
// signatures: the search follows the signature of bad's first failure (or
// the one --signature picks), counts the other's failures as neither pass
// nor fail, and the reports say what decided and list the others apart.
func TestJobSignatures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		signature string
		culpritA  int
		culpritB  int
		rateB     float64
		want      string // the bug whose culprit is found
	}{
		// The search bisects the signature of bad's first failure.
		{"first failure of bad", "", 30, 90, 0.5, ""},
		// --signature picks A, whose culprit is later in the range.
		{"signature regexp", "^A$", 90, 30, 0.5, "A"},
		// A another bug hides often below A's culprit.
		{"other bug masks", "A", 40, 20, 0.6, "A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hist := linear(128)
			dir := t.TempDir()
			job, err := Create(dir, testSpec(Options{Confidence: 0.99, Signature: tc.signature}), hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			f := newFake(hist, tc.culpritA, 0.5, 3)
			f.culprit2, f.rate2 = tc.culpritB, tc.rateB
			res, err := job.Run(context.Background(), f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				for _, r := range job.Records() {
					if r.Type == RecRun && r.Verdict == Fail {
						tc.want = r.FailSig
						break
					}
				}
			}
			want := map[string]int{"A": tc.culpritA, "B": tc.culpritB}[tc.want]
			if res.Status != StatusFound || res.Culprit != hist[want].Hash {
				t.Fatalf("%s %s, want the culprit of %s (%s); %s", res.Status, res.Culprit, tc.want, hist[want].Hash, res.Reason)
			}
			if res.Signature != tc.want || res.OtherFails == 0 {
				t.Errorf("signature %q with %d other failures, want %q and some", res.Signature, res.OtherFails, tc.want)
			}
			others := job.OtherFailures()
			if len(others) != 1 || others[0].Signature == tc.want || len(others[0].Runs) != res.OtherFails {
				t.Errorf("other failures %+v, result says %d", others, res.OtherFails)
			}
			d := res.Decided
			if d == nil || d.Bad != res.Culprit || len(d.BadRuns) == 0 || d.Good != hist[want-1].Hash || len(d.GoodRuns) == 0 {
				t.Fatalf("decided %+v", d)
			}
			var md, js strings.Builder
			job.WriteMarkdown(&md)
			job.WriteJSON(&js)
			for _, s := range []string{"decided by", "Failures of other signatures", fmt.Sprintf("#%d", d.BadRuns[0])} {
				if !strings.Contains(md.String(), s) {
					t.Errorf("markdown report lacks %q", s)
				}
			}
			if !strings.Contains(js.String(), `"other_fails"`) || !strings.Contains(js.String(), `"decided"`) {
				t.Errorf("JSON report lacks the other failures or what decided")
			}
			// The journal gives back the same answer, and one without
			// signatures (written before they existed) still resumes.
			re, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := re.core.Target(); s != tc.want || re.Status().OtherFails != res.OtherFails {
				t.Errorf("reopened: signature %q, %d other failures", s, re.Status().OtherFails)
			}
		})
	}
}

// TestJournalWithoutSignatures resumes a journal whose runs have no
// failure signature (older kbisect): every failure counts, those the
// resumed job signs included (a failure without a signature does not pin
// the signature bisected).
func TestJournalWithoutSignatures(t *testing.T) {
	hist := linear(64)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Confidence: 0.99}), hist)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(hist, 20, 0.5, 5)
	f.onCall = func(n int) {
		if n == 15 {
			f.always = true
		}
	}
	job.Spec.Options.Retries = 1
	job.Run(context.Background(), f, nil)
	job.Close()
	b, err := os.ReadFile(filepath.Join(dir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "fail_signature") {
		t.Fatal("the fake tester wrote failure signatures")
	}
	f.always = false
	f.onCall = nil
	f.failSig = "natt-esp: corruption, wire encap, 2-16 bytes, changed"
	job, err = Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFound || res.Culprit != hist[20].Hash || res.OtherFails != 0 {
		t.Errorf("%s %s with %d other failures, want %s", res.Status, res.Culprit, res.OtherFails, hist[20].Hash)
	}
	if res.Signature != f.failSig {
		t.Errorf("signature %q, want the first signed failure's %q", res.Signature, f.failSig)
	}
}

// TestJobCancelsRunsInFlight: with --parallel, the bisection concludes as
// soon as the runs seen are enough, cancelling those still in flight (wall
// time); they are journaled as cancelled, not lost.
func TestJobCancelsRunsInFlight(t *testing.T) {
	hist := linear(100)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Confidence: 0.99, Parallel: 4}), hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	f := newFake(hist, 61, 0.6, 8)
	f.delay = 30 * time.Millisecond
	res, err := job.Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFound || res.Culprit != hist[61].Hash || res.LostRuns != 0 {
		t.Fatalf("%s %s, %d lost runs; want %s found, none lost", res.Status, res.Culprit, res.LostRuns, hist[61].Hash)
	}
	cancelled := 0
	for _, r := range checkJournal(t, dir) {
		if r.Type == RecCancel {
			cancelled++
		}
	}
	if cancelled == 0 {
		t.Errorf("no run in flight was cancelled at the conclusion")
	}
	t.Logf("%d runs, %d cancelled in flight", res.Runs, cancelled)
}

// TestProgressEstimate: the progress lines estimate the runs left from the
// bits the runs so far gained; half-way through, the estimate is within a
// factor of three of the runs the search then still took.
func TestProgressEstimate(t *testing.T) {
	for _, tc := range []struct {
		n, culprit int
		rate       float64
	}{{128, 77, 0.5}, {256, 40, 0.8}, {64, 20, 0.3}} {
		t.Run(fmt.Sprintf("%d-%g", tc.n, tc.rate), func(t *testing.T) {
			hist := linear(tc.n)
			job, err := Create(t.TempDir(), testSpec(Options{Confidence: 0.99}), hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			var events []Progress
			res, err := job.Run(context.Background(), newFake(hist, tc.culprit, tc.rate, 11), func(p Progress) {
				if p.Finished == nil && p.Err == nil && !p.Started {
					events = append(events, p)
				}
			})
			if err != nil || res.Status != StatusFound {
				t.Fatalf("%v %+v", err, res)
			}
			total := res.Runs
			mid := events[len(events)/2]
			actual := total - mid.Runs
			if mid.LeftRuns == 0 || float64(mid.LeftRuns) > 3*float64(actual)+3 || 3*float64(mid.LeftRuns)+3 < float64(actual) {
				t.Errorf("after %d of %d runs: estimate %d runs left, took %d", mid.Runs, total, mid.LeftRuns, actual)
			}
			if !strings.Contains(mid.String(), "runs,") || !strings.Contains(mid.String(), "left") {
				t.Errorf("progress line without the estimate: %s", mid)
			}
			t.Logf("after %d of %d runs: estimate %d left (%s), took %d", mid.Runs, total, mid.LeftRuns, mid.LeftTime, actual)
		})
	}
}

// TestEndOfJobReportsMatch: the reports a job writes when it ends are the
// ones `kbisect bisect report` writes from its journal later (the posterior
// plot and the run times included).
func TestEndOfJobReportsMatch(t *testing.T) {
	hist := linear(64)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Confidence: 0.99}), hist)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Run(context.Background(), newFake(hist, 41, 0.6, 5), nil); err != nil {
		t.Fatal(err)
	}
	live, err := job.WriteReports(filepath.Join(t.TempDir(), "live"))
	job.Close()
	if err != nil {
		t.Fatal(err)
	}
	later, err := OpenReport(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := later.WriteReports(filepath.Join(t.TempDir(), "later"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range live {
		a, _ := os.ReadFile(live[i])
		b, _ := os.ReadFile(again[i])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the end of the job and bisect report", filepath.Base(live[i]))
		}
	}
	svg, _ := os.ReadFile(live[3])
	if strings.Contains(string(svg), "no runs yet") {
		t.Errorf("the end-of-job posterior plot is empty")
	}
}
