package bisect

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// budgets records what each run was given.
type budgets struct {
	*fakeTester
	mu  sync.Mutex
	got []time.Duration
}

func (b *budgets) Test(ctx context.Context, commit string, budget time.Duration) (Outcome, error) {
	b.mu.Lock()
	b.got = append(b.got, budget)
	b.mu.Unlock()
	return b.fakeTester.Test(ctx, commit, budget)
}

// TestRunLimit: in runs mode a run always has a time limit: --timeout;
// for a command, before any pass the endpoint's test time (or an hour),
// then ten times the longest pass, at least a minute; for the kernel
// pipeline, --run-time.
func TestRunLimit(t *testing.T) {
	tests := []struct {
		name        string
		kernel      bool
		o           Options
		first, then time.Duration
	}{
		{"timeout", false, Options{Timeout: 5 * time.Second}, 5 * time.Second, 5 * time.Second},
		{"time budget, then from passes", false, Options{Budget: 10 * time.Minute}, 10 * time.Minute, time.Minute},
		{"runs budget, then from passes", false, Options{BudgetRuns: 50}, time.Hour, time.Minute},
		{"kernel", true, Options{RunTime: 2 * time.Minute}, 2 * time.Minute, 2 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist := linear(20)
			spec := testSpec(tc.o)
			if tc.kernel {
				spec.Exec = ""
			}
			job, err := Create(t.TempDir(), spec, hist)
			if err != nil {
				t.Fatal(err)
			}
			defer job.Close()
			b := &budgets{fakeTester: newFake(hist, 10, 0.8, 1)}
			if _, err := job.Run(context.Background(), b, nil); err != nil {
				t.Fatal(err)
			}
			if b.got[0] != tc.first {
				t.Errorf("first run given %s, want %s", b.got[0], tc.first)
			}
			if last := b.got[len(b.got)-1]; last != tc.then {
				t.Errorf("last run given %s, want %s (all: %v)", last, tc.then, b.got)
			}
			for _, r := range job.Records() {
				if r.Type == RecBegin && r.Budget <= 0 {
					t.Errorf("run %d began without a limit", r.Seq)
				}
			}
		})
	}
}

// TestStatusInFlight: a run begun and not completed is in flight while the
// bisection runs, and lost only once it stopped.
func TestStatusInFlight(t *testing.T) {
	hist := linear(10)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.append(Record{Type: RecBegin, Seq: 1, Commit: hist[9].Hash}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Status(); r.Status != "running" || r.LostRuns != 0 || r.InFlight != 1 {
		t.Errorf("while running: status %s, %d lost, %d in flight; want running, 0, 1", r.Status, r.LostRuns, r.InFlight)
	}
	var b strings.Builder
	st.WriteStatus(&b)
	if !strings.Contains(b.String(), "0 lost, 1 in flight") {
		t.Errorf("status text:\n%s", b.String())
	}
	job.Close()
	st, _ = Open(dir)
	if r := st.Status(); r.Status != "interrupted" || r.LostRuns != 1 || r.InFlight != 0 {
		t.Errorf("after the process stopped: status %s, %d lost, %d in flight; want interrupted, 1, 0", r.Status, r.LostRuns, r.InFlight)
	}
}

// TestOptionsRefused: values that cannot be meant are errors naming their
// flag, never replaced by defaults; Create makes no job directory for them.
func TestOptionsRefused(t *testing.T) {
	tests := []struct {
		o    Options
		flag string
	}{
		{Options{Confidence: math.NaN()}, "--confidence"},
		{Options{Confidence: 1e-300}, "--confidence"},
		{Options{Confidence: 0.3}, "--confidence"},
		{Options{Confidence: 1}, "--confidence"},
		{Options{Timeout: -time.Second}, "--timeout"},
		{Options{MaxTime: -time.Second}, "--max-time"},
		{Options{RunTime: -time.Second}, "--run-time"},
		{Options{MaxRuns: -1}, "--max-runs"},
		{Options{Retries: -1}, "--retries"},
		{Options{BuildCost: -1}, "--build-cost"},
		{Options{BuildCost: math.NaN()}, "--build-cost"},
		{Options{Parallel: -2}, "--parallel"},
	}
	for _, tc := range tests {
		dir := filepath.Join(t.TempDir(), "job")
		_, err := Create(dir, testSpec(tc.o), linear(10))
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") {
			t.Errorf("%+v: %v, want an error naming %s", tc.o, err, tc.flag)
		}
		if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("%+v: the job directory was made", tc.o)
		}
	}
}

// fill writes zeros to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// TestFullDisk: a journal that cannot be written is ErrStorage and keeps
// no torn line; a job that cannot be created leaves nothing.
func TestFullDisk(t *testing.T) {
	mnt := testenv.MountTmpfs(t, "256k")
	hist := linear(200)
	dir := filepath.Join(mnt, "job")
	job, err := Create(dir, testSpec(Options{}), hist)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(mnt, "fill"))
	f := newFake(hist, 150, 0.5, 1)
	_, err = job.Run(context.Background(), f, nil)
	job.Close()
	if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Run on a full disk: %v, want ErrStorage", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, JournalName))
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Errorf("the journal ends with a torn line: %q", b[max(0, len(b)-80):])
	}
	recs, err := ReadJournal(dir)
	if err != nil || strings.Count(string(b), "\n") != len(recs) {
		t.Errorf("%d lines, %d records (%v)", strings.Count(string(b), "\n"), len(recs), err)
	}
	// Space again: the job resumes.
	os.Remove(filepath.Join(mnt, "fill"))
	job, err = Resume(dir, hist)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Run(context.Background(), f, nil)
	job.Close()
	if err != nil || res.Culprit != hist[150].Hash {
		t.Errorf("after freeing space: %+v, %v", res, err)
	}

	// A job that cannot be created on a full disk leaves nothing.
	fill(t, filepath.Join(mnt, "fill"))
	dir2 := filepath.Join(mnt, "job2")
	if _, err := Create(dir2, testSpec(Options{}), linear(5000)); !errors.Is(err, ErrStorage) {
		t.Errorf("Create on a full disk: %v, want ErrStorage", err)
	}
	if _, err := os.Stat(dir2); err == nil {
		t.Errorf("a job that could not be created left %s", dir2)
	}
}
