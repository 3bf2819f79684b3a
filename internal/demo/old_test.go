package demo

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/testcases"
)

// oldDemo is a bisection of a short 3.14.5 history (the seed report's bad
// kernel, from the project's shared/kernels) whose culprit puts the
// sporadic corruption into 3.14's own esp_input_done2. The kernels get the
// xen-guest fragment too, as the old-kernel tests of testcases build them,
// so the first build is theirs (the build cache has it). The bug arms once
// in 3 s: a 10 s run catches it nine times in ten.
func oldDemo(t testing.TB, hypervisor string) Options {
	return Options{
		Tarball: filepath.Join(testenv.OldKernelsDir(t), testenv.Tarball3_14),
		Commits: 8, Seed: 3, OneIn: 3, RunTime: 10 * time.Second,
		Hypervisor: hypervisor, Fragments: []string{"xen-guest"},
	}
}

// TestOldKernelBisect: kbisect names the culprit in a 3.14.5 history under
// QEMU with the confidence asked.
func TestOldKernelBisect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 3.14.5 kernels and bisects for minutes")
	}
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	o := oldDemo(t, testcases.HypervisorQEMU)
	o.JobDir, o.Progress = t.TempDir(), func(s string) { t.Log(s) }
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Correct || r.Status != "found" || r.Confidence < 0.99 {
		t.Fatalf("found %s (%s, confidence %.3f), injected %s", r.Found, r.Status, r.Confidence, r.Expected)
	}
	h, err := Make(context.Background(), HistoryOptions{Tarball: o.Tarball, Commits: o.Commits, Seed: o.Seed, OneIn: o.OneIn})
	if err != nil {
		t.Fatal(err)
	}
	diff, _ := git(context.Background(), h.Dir, nil, "show", h.Culprit)
	if !strings.Contains(diff, "prandom_u32() % 3") || !strings.Contains(diff, "+\tif (x->encap && x->props.mode == XFRM_MODE_TRANSPORT)") {
		t.Errorf("the culprit is not 3.14's variant of the bug:\n%s", diff)
	}
	t.Logf("runs %d, builds %d (%d cache hits), phases %+v", r.Runs, r.Builds, r.CacheHits, r.Phases)
}

// BenchmarkOldKernelBisectXen is the same bisection on Xen PV pairs (the
// report's setup): minutes of nested Xen per run, so a benchmark, not a
// test. 3.14.5 domUs corrupt payloads by themselves when the guests see
// AES-NI (issue #15), which would hide the injected bug: the pairs boot
// with eagerfpu=on, which 3.14 honours and which avoids it.
func BenchmarkOldKernelBisectXen(b *testing.B) {
	testenv.NeedXen(b)
	for i := 0; i < b.N; i++ {
		o := oldDemo(b, testcases.HypervisorXen)
		o.JobDir = b.TempDir()
		o.Append = "eagerfpu=on"
		r, err := Run(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Runs), "runs")
		b.ReportMetric(r.Phases.Total/60, "minutes")
		b.ReportMetric(r.Confidence, "confidence")
		if !r.Correct {
			b.Errorf("found %s (%s), injected %s", r.Found, r.Status, r.Expected)
		}
	}
}
