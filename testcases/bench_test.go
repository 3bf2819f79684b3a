package testcases

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRun measures, for the same pair of guests in one run, ESP
// throughput (NAT-T transport mode, each suite), plain TCP throughput, and
// boot time to agent-ready. `make bench-run` prints it.
func BenchmarkRun(b *testing.B) {
	kernel := benchKernel(b)
	for _, bc := range []struct{ name, test, crypto string }{
		{"tcp", "tcp", ""},
		{"esp-cbc-aes-sha1", "natt-esp", "cbc-aes-sha1"},
		{"esp-gcm-aes", "natt-esp", "gcm-aes"},
		{"esp-null-sha1", "natt-esp", "null-sha1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				o := Options{
					Test: bc.test, Kernels: kernel.kernels, Modules: kernel.modules,
					Duration: 20 * time.Second, Topology: "direct", Crypto: bc.crypto,
					InjectOffset: -1, RunDir: b.TempDir(),
				}
				r, err := Run(context.Background(), o)
				if err != nil {
					b.Fatal(err)
				}
				if r.Verdict != Pass {
					b.Fatalf("%s: %s", r.Verdict, r.Reason)
				}
				b.ReportMetric(r.ThroughputMbit, "Mbit/s")
				b.ReportMetric(r.BootSeconds, "boot-guest-s")
				b.ReportMetric(r.BootWallSeconds, "boot-wall-s")
			}
		})
	}
}
