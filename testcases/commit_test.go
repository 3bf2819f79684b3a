package testcases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kbisect/kbisect/kbuild"
)

// fakeExec is an Executor that returns a canned report (or error) and
// records the options it was given.
type fakeExec struct {
	r   *Report
	err error
	got Options
}

func (f *fakeExec) Run(ctx context.Context, o Options) (*Report, error) {
	f.got = o
	return f.r, f.err
}

// TestCommitVerdicts checks the one mapping of the commit pipeline: what a
// run reports becomes Pass, Fail, Skip (the kernel panics) or Error.
func TestCommitVerdicts(t *testing.T) {
	panicked := &Report{Verdict: Error, Reason: "guest receiver: kernel panic"}
	panicked.Guests[1].Outcome = "panic"
	tests := []struct {
		name    string
		r       *Report
		err     error
		verdict Verdict
		reason  string
	}{
		{"pass", &Report{Verdict: Pass, Reason: "all verified"}, nil, Pass, "all verified"},
		{"fail", &Report{Verdict: Fail, Reason: "1 corruption"}, nil, Fail, "1 corruption"},
		{"panic is skip", panicked, nil, Skip, "the kernel panics: guest receiver: kernel panic"},
		{"timeout is error", &Report{Verdict: Error, Reason: "timed out"}, nil, Error, "timed out"},
		{"executor refuses", nil, errors.New("--topology nat is not supported"), Error, "--topology nat is not supported"},
	}
	a := &kbuild.Artifact{BzImage: "/k/bzImage", BuiltCommit: "0123456789abcdef"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fe := &fakeExec{r: tc.r, err: tc.err}
			ct := &CommitTest{Run: Options{Test: "natt-esp", StopOnFail: true}, RunRoot: t.TempDir(), Exec: fe}
			res := ct.RunKernel(context.Background(), a, 90*time.Second, "")
			if res.Verdict != tc.verdict || res.Reason != tc.reason {
				t.Errorf("verdict %q %q, want %q %q", res.Verdict, res.Reason, tc.verdict, tc.reason)
			}
			if (res.Err != nil) != (tc.err != nil) || res.Report != tc.r || res.Artifact != a {
				t.Errorf("result %+v", res)
			}
			o := fe.got
			if o.Kernels != [2]string{"/k/bzImage", "/k/bzImage"} || o.Duration != 90*time.Second || !o.StopOnFail ||
				filepath.Dir(o.RunDir) != ct.RunRoot || filepath.Base(o.RunDir)[:13] != "0123456789ab-" {
				t.Errorf("run options %+v", o)
			}
		})
	}
}

// TestCommitBuildErrors checks that a commit that does not build is Skip
// and that other build failures are Error.
func TestCommitBuildErrors(t *testing.T) {
	ct := &CommitTest{Build: kbuild.Options{Repo: t.TempDir(), Config: "tinyconfig"}}
	res := ct.BuildCommit(context.Background(), "HEAD")
	if res.Verdict != Error || res.Err == nil || res.Artifact != nil {
		t.Errorf("a directory that is no repository: %+v, want Error", res)
	}
	be := &kbuild.BuildError{Commit: "0123456789abcdef", FirstError: "foo.c:1: error: bar", Log: "/l"}
	for _, err := range []error{be, fmt.Errorf("wrapped: %w", be), &kbuild.ConfigError{Commit: "abc"}} {
		if !kbuild.Untestable(err) {
			t.Errorf("%v is not untestable", err)
		}
	}
}

// seqExec is an Executor that returns one verdict per run, in order.
type seqExec struct {
	verdicts []Verdict
	runs     int
}

func (f *seqExec) Run(ctx context.Context, o Options) (*Report, error) {
	v := f.verdicts[f.runs]
	f.runs++
	return &Report{Verdict: v, Reason: fmt.Sprintf("run %d", f.runs)}, nil
}

// TestCommitRepeat: runs until one does not pass or all have, each
// reported, the last one the result.
func TestCommitRepeat(t *testing.T) {
	a := &kbuild.Artifact{BzImage: "/k/bzImage", BuiltCommit: "0123456789abcdef"}
	for _, tc := range []struct {
		name     string
		verdicts []Verdict
		runs     int
		want     Verdict
		ran      int
	}{
		{"all pass", []Verdict{Pass, Pass, Pass}, 3, Pass, 3},
		{"fail stops", []Verdict{Pass, Fail, Pass}, 3, Fail, 2},
		{"error stops", []Verdict{Error, Pass}, 2, Error, 1},
		{"one run", []Verdict{Pass, Fail}, 1, Pass, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := &seqExec{verdicts: tc.verdicts}
			ct := &CommitTest{Run: Options{Test: "natt-esp", Duration: time.Minute}, RunRoot: t.TempDir(), Exec: fe}
			reported := 0
			res := ct.Repeat(context.Background(), a, tc.runs, func(*Report) { reported++ })
			if res.Verdict != tc.want || fe.runs != tc.ran || reported != tc.ran {
				t.Errorf("verdict %s after %d runs, %d reported; want %s after %d", res.Verdict, fe.runs, reported, tc.want, tc.ran)
			}
			if res.Reason != fmt.Sprintf("run %d", tc.ran) || res.Artifact != a {
				t.Errorf("result %+v is not the last run's", res)
			}
		})
	}
}
