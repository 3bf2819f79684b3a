package lava

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/testcases"
)

// The tests run against a real LAVA instance: `make test-lava` starts a
// throwaway one on this machine (scripts/lava-instance.sh) and sets
// KBISECT_LAVA_URL and KBISECT_LAVA_TOKEN. Without them the tests skip,
// unless KBISECT_REQUIRE_LAVA is set (make test-lava sets it).
func lavaExecutor(t *testing.T, deviceType string) *Executor {
	t.Helper()
	u, tok := os.Getenv("KBISECT_LAVA_URL"), os.Getenv("KBISECT_LAVA_TOKEN")
	if u == "" || tok == "" {
		if os.Getenv("KBISECT_REQUIRE_LAVA") != "" {
			t.Fatal("KBISECT_LAVA_URL and KBISECT_LAVA_TOKEN are not set: run `make test-lava`")
		}
		t.Skip("no LAVA instance: `make test-lava` starts one")
	}
	c, err := NewClient(u, tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := Serve("", c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &Executor{Client: c, DeviceType: deviceType, Publisher: srv, Poll: time.Second, QueueTimeout: 10 * time.Minute}
}

func runOptions(t *testing.T, inject int64) testcases.Options {
	kernel, modules := testenv.DebianKernel(t)
	return testcases.Options{
		Test:         "natt-esp",
		Kernels:      [2]string{kernel, kernel},
		Modules:      [2]string{modules, modules},
		Duration:     8 * time.Second,
		RunDir:       t.TempDir(),
		InjectOffset: inject,
		Progress:     func(s string) { t.Log(s) },
	}
}

// TestRun runs the flagship test on Debian's kernel through LAVA: a clean
// run passes, a corrupted byte fails with its offset, a device whose QEMU
// cannot start gives error, never fail.
func TestRun(t *testing.T) {
	const offset = 300000
	tests := []struct {
		name       string
		deviceType string
		inject     int64
		verdict    testcases.Verdict
		// want is in the reason of an error.
		want string
	}{
		{"pass", "qemu", -1, testcases.Pass, ""},
		{"injected corruption fails", "qemu", offset, testcases.Fail, ""},
		// QEMU cannot start on these devices (-m no-such-size).
		{"broken device is an error", "kbisect-broken", -1, testcases.Error, "LAVA job"},
		// One device for two roles: the job is never scheduled.
		{"never started is an error", "kbisect-lonely", -1, testcases.Error, "never started"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Four qemu devices take the two good runs at once; the
			// error cases have devices of their own.
			t.Parallel()
			e := lavaExecutor(t, tc.deviceType)
			e.QueueTimeout = 30 * time.Second
			o := runOptions(t, tc.inject)
			r, err := e.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("verdict %s: %s", r.Verdict, r.Reason)
			if r.Verdict != tc.verdict {
				b, _ := json.MarshalIndent(r, "", "  ")
				t.Fatalf("verdict %s (%s), want %s; report: %s", r.Verdict, r.Reason, tc.verdict, b)
			}
			if r.Remote == nil || r.Remote.Executor != "lava" || len(r.Remote.Jobs) != 2 {
				t.Fatalf("report does not name the two LAVA jobs: %+v", r.Remote)
			}
			if !strings.Contains(r.Reason, "LAVA jobs "+r.Remote.Jobs[0]) {
				t.Errorf("reason %q does not name the LAVA jobs", r.Reason)
			}
			switch tc.verdict {
			case testcases.Pass:
				if r.BytesVerified < 1<<20 || len(r.Corruptions) != 0 {
					t.Errorf("pass with %d bytes verified, %d corruptions", r.BytesVerified, len(r.Corruptions))
				}
				for _, g := range r.Guests {
					if g.KernelRelease == "" || g.BootSeconds <= 0 {
						t.Errorf("%s: no kernel release or boot time from the console: %+v", g.Role, g)
					}
				}
			case testcases.Fail:
				if len(r.Corruptions) == 0 || r.Corruptions[0].Offset != offset {
					t.Fatalf("corruptions %+v, want the first at offset %d", r.Corruptions, offset)
				}
			case testcases.Error:
				if !strings.Contains(r.Reason, tc.want) {
					t.Errorf("error reason %q does not say what LAVA reported", r.Reason)
				}
			}
		})
	}
}

// TestRunCancel cancels a run once its jobs are submitted: the run is an
// error and the jobs end Canceled.
func TestRunCancel(t *testing.T) {
	e := lavaExecutor(t, "qemu")
	o := runOptions(t, -1)
	o.Duration = 5 * time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	var jobs []string
	o.Progress = func(s string) {
		t.Log(s)
		if strings.Contains(s, "submitted") {
			cancel()
		}
	}
	time.AfterFunc(5*time.Minute, cancel)
	r, err := e.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != testcases.Error || r.Remote == nil {
		t.Fatalf("verdict %s (%s), want error naming the jobs", r.Verdict, r.Reason)
	}
	jobs = r.Remote.Jobs
	deadline := time.Now().Add(2 * time.Minute)
	for _, s := range jobs {
		var id int
		fmt.Sscan(s, &id)
		for {
			j, err := e.Client.Job(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State == StateFinished {
				if j.Health != HealthCanceled {
					t.Errorf("job %d ended %s, want Canceled", id, j.Health)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d still %s 2 minutes after the cancel", id, j.State)
			}
			time.Sleep(time.Second)
		}
	}
}

// commitTester is a bisect.Tester over prebuilt kernels: every commit boots
// Debian's kernel, and from the culprit on the receiving agent corrupts a
// byte (the self-test hook), so the culprit is known.
type commitTester struct {
	e       *Executor
	opts    testcases.Options
	hist    bisect.LinearHistory
	culprit int
	// inflight counts the runs in progress; most is its maximum.
	mu             sync.Mutex
	inflight, most int
}

func (ct *commitTester) Test(ctx context.Context, commit string, budget time.Duration) (bisect.Outcome, error) {
	o := ct.opts
	o.RunDir = filepath.Join(o.RunDir, fmt.Sprintf("run-%d", time.Now().UnixNano()))
	for i, c := range ct.hist {
		if c.Hash == commit && i >= ct.culprit {
			o.InjectOffset = 200000
		}
	}
	ct.mu.Lock()
	ct.inflight++
	ct.most = max(ct.most, ct.inflight)
	ct.mu.Unlock()
	r, err := ct.e.Run(ctx, o)
	ct.mu.Lock()
	ct.inflight--
	ct.mu.Unlock()
	if err != nil {
		return bisect.Outcome{}, err
	}
	out := bisect.Outcome{Reason: r.Reason, Elapsed: budget}
	out.Evidence, _ = json.Marshal(r)
	switch r.Verdict {
	case testcases.Pass:
		out.Verdict = bisect.Pass
	case testcases.Fail:
		out.Verdict = bisect.Fail
	default:
		out.Verdict = bisect.Error
	}
	return out, nil
}

// TestBisectParallel bisects five commits through LAVA with two runs in
// flight, and checks the culprit and that the report names the LAVA jobs of
// every run.
func TestBisectParallel(t *testing.T) {
	e := lavaExecutor(t, "qemu")
	hist := make(bisect.LinearHistory, 5)
	for i := range hist {
		hist[i] = bisect.Commit{Hash: fmt.Sprintf("%040x", i+1), Subject: fmt.Sprintf("commit %d", i)}
		if i > 0 {
			hist[i].Parents = []string{hist[i-1].Hash}
		}
	}
	dir := t.TempDir()
	e.StateDir = func(ctx context.Context) string {
		ri, _ := bisect.RunFromContext(ctx)
		return filepath.Join(ri.JobDir, "lava")
	}
	spec := bisect.JobSpec{Repo: "prebuilt", Good: hist[0].Hash, Bad: hist[4].Hash, Exec: "lava",
		Options: bisect.Options{Strategy: "classic", Parallel: 2, Retries: 2, RetryBackoff: time.Second}}
	job, err := bisect.Create(dir, spec, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	o := runOptions(t, -1)
	o.StopOnFail = true
	ct := &commitTester{e: e, opts: o, hist: hist, culprit: 3}
	t0 := time.Now()
	res, err := job.Run(context.Background(), ct, func(p bisect.Progress) {
		t.Logf("progress: %+v", p)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bisection through LAVA: %s in %v, %d runs", res.Status, time.Since(t0).Round(time.Second), res.Runs)
	if res.Status != bisect.StatusFound || res.Culprit != hist[3].Hash {
		t.Fatalf("got %s %s, want found %s: %s", res.Status, res.Culprit, hist[3].Hash, res.Reason)
	}
	var md strings.Builder
	if err := job.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", md.String())
	recs, err := bisect.ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, r := range recs {
		if r.Type != bisect.RecRun && r.Type != bisect.RecInfra {
			continue
		}
		runs++
		var ev testcases.Report
		json.Unmarshal(r.Evidence, &ev)
		if ev.Remote == nil || len(ev.Remote.Jobs) != 2 || !strings.Contains(md.String(), "[LAVA jobs "+ev.Remote.Jobs[0]+", "+ev.Remote.Jobs[1]+"]") {
			t.Errorf("run %d: the report does not show its LAVA jobs (%+v)", r.Seq, ev.Remote)
		}
	}
	if runs < 2 || ct.most < 2 {
		t.Errorf("%d runs, at most %d at once: want runs in parallel", runs, ct.most)
	}
}

// TestReattach kills a process whose run is in flight in LAVA (as a crash
// would) and checks that a new process running the same test reattaches to
// the jobs and reports their result instead of submitting new ones.
func TestReattach(t *testing.T) {
	if state := os.Getenv("KBISECT_LAVA_CHILD_STATE"); state != "" {
		// The process that crashes.
		e := lavaExecutor(t, "qemu")
		e.StateDir = func(context.Context) string { return state }
		e.Run(context.Background(), reattachOptions(t))
		return
	}
	e := lavaExecutor(t, "qemu")
	state := t.TempDir()
	e.StateDir = func(context.Context) string { return state }
	child := exec.Command(os.Args[0], "-test.run=^TestReattach$", "-test.v")
	// The child is killed, so its own cleanups never run: its temporary
	// directories go under one of ours.
	child.Env = append(os.Environ(), "KBISECT_LAVA_CHILD_STATE="+state, "TMPDIR="+t.TempDir())
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	// Wait until the child's jobs run and the receiver's agent is up (its
	// artifacts are downloaded), then kill it.
	var rec record
	deadline := time.Now().Add(5 * time.Minute)
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	for {
		if time.Now().After(deadline) {
			t.Fatal("the child's LAVA jobs did not start in 5 minutes")
		}
		select {
		case err := <-exited:
			t.Fatalf("the child ended (%v) before it could be killed mid-run", err)
		default:
		}
		time.Sleep(time.Second)
		files, _ := filepath.Glob(filepath.Join(state, "lava-*.json"))
		if len(files) != 1 {
			continue
		}
		b, err := os.ReadFile(files[0])
		if err != nil || json.Unmarshal(b, &rec) != nil || len(rec.Jobs) != 2 {
			continue
		}
		lines, _ := e.Client.Logs(context.Background(), rec.Jobs[1])
		if slices.ContainsFunc(lines, func(l LogLine) bool { return strings.Contains(l.Text(), "KBISECT-EVENT {") }) {
			break
		}
	}
	child.Process.Kill()
	<-exited
	t.Logf("killed the process following LAVA jobs %v", rec.Jobs)
	o := reattachOptions(t)
	var reattached bool
	o.Progress = func(s string) {
		t.Log(s)
		reattached = reattached || strings.Contains(s, "reattached")
	}
	r, err := e.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdict %s: %s", r.Verdict, r.Reason)
	if !reattached || r.Remote == nil || fmt.Sprint(r.Remote.Jobs) != fmt.Sprint([]string{fmt.Sprint(rec.Jobs[0]), fmt.Sprint(rec.Jobs[1])}) {
		t.Fatalf("ran %+v, want a reattach to jobs %v", r.Remote, rec.Jobs)
	}
	if r.Verdict != testcases.Pass {
		t.Fatalf("verdict %s (%s), want pass", r.Verdict, r.Reason)
	}
	if files, _ := filepath.Glob(filepath.Join(state, "lava-*.json")); len(files) != 0 {
		t.Errorf("records left after the run: %v", files)
	}
}

func reattachOptions(t *testing.T) testcases.Options {
	o := runOptions(t, -1)
	o.Duration = 20 * time.Second
	return o
}
