package demo

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
)

// sizeBug confines the benchmark's bug to TCP segments whose payload is 100
// bytes modulo 256: one length in 256, chosen before measuring.
var sizeBug = PayloadSizes{Mod: 256, Rem: 100}

// BenchmarkWriteSizes asks whether --write-sizes vary finds a
// size-dependent corruption sooner than the fixed 64 KiB writes of dd | nc.
// The kernel is the demo's bad commit (6.1) with the bug armed every second
// and confined to sizeBug: a run fails at the first such segment the
// receiver decapsulates. Each mode runs KBISECT_BENCH_RUNS (default 4) runs
// of up to a minute on a QEMU pair, each stopping at its first corruption.
// A row reports the corruptions found per minute of traffic (fails over
// the minutes tested: the rate of a censored exponential) and the mean
// seconds of a run; and, from a 20 s run of the mode on Debian's 6.1 (no
// bug), what it costs in bytes: ESP Mbit/s, ESP packets/s and the distinct
// ESP sizes on the wire. `make bench-writesizes` prints them.
func BenchmarkWriteSizes(b *testing.B) {
	testenv.NeedRoot(b)
	testenv.NeedQEMU(b)
	testenv.NeedLinuxSource(b)
	deb, debMods := testenv.DebianKernel(b)
	runs := 4
	if v := os.Getenv("KBISECT_BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("KBISECT_BENCH_RUNS=%q: give a positive number of runs", v)
		}
		runs = n
	}
	ctx := context.Background()
	h, err := Make(ctx, HistoryOptions{Commits: 4, Seed: 1, OneIn: 1, Sizes: sizeBug})
	if err != nil {
		b.Fatal(err)
	}
	frags, err := kconfigs.SelectFor(testcases.HypervisorQEMU, nil, true, "tinyconfig")
	if err != nil {
		b.Fatal(err)
	}
	ct := &testcases.CommitTest{
		Build: kbuild.Options{Repo: h.Dir, Config: "tinyconfig", Fragments: frags},
		Run: testcases.Options{
			Test: "natt-esp", Topology: "direct", Crypto: "cbc-aes-sha1", Pattern: "prng",
			Capture: true, StopOnFail: true, InjectOffset: -1,
		},
		RunRoot: b.TempDir(),
	}
	built := ct.BuildCommit(ctx, h.Bad)
	if built.Artifact == nil {
		b.Fatalf("build the demo's bad commit: %s", built.Reason)
	}
	for _, mode := range []string{proto.WriteSizesFixed, proto.WriteSizesVary} {
		b.Run(mode, func(b *testing.B) {
			ct.Run.WriteSizes = mode
			for i := 0; i < b.N; i++ {
				o := ct.Run
				o.Kernels, o.Modules = [2]string{deb, deb}, [2]string{debMods, debMods}
				o.Duration, o.RunDir = 20*time.Second, b.TempDir()
				clean, err := testcases.Run(ctx, o)
				if err != nil || clean.Verdict != testcases.Pass {
					b.Fatalf("clean run on Debian's kernel: %v %+v", err, clean)
				}
				b.ReportMetric(clean.ThroughputMbit, "esp-Mbit/s")
				b.ReportMetric(clean.Wire.ESPPerSecond, "esp-pkt/s")
				b.ReportMetric(float64(clean.Wire.DistinctSizes), "esp-sizes")
				var fails int
				var seconds float64
				for r := 0; r < runs; r++ {
					res := ct.RunKernel(ctx, built.Artifact, time.Minute, "")
					if res.Verdict != testcases.Pass && res.Verdict != testcases.Fail {
						b.Fatalf("run %d: %s: %s", r+1, res.Verdict, res.Reason)
					}
					rep := res.Report
					if res.Verdict == testcases.Fail {
						fails++
					}
					seconds += rep.TestSeconds
					b.Logf("run %d: %s after %.1f s (%d ESP sizes); wire %s",
						r+1, res.Verdict, rep.TestSeconds, rep.Wire.DistinctSizes, rep.Wire.Verdict)
				}
				b.ReportMetric(float64(fails)/(seconds/60), "found/min")
				b.ReportMetric(float64(fails), "fails")
				b.ReportMetric(seconds/float64(runs), "s/run")
			}
		})
	}
}
