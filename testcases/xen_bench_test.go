package testcases

import (
	"context"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// BenchmarkXen measures NAT-T ESP throughput (cbc-aes-sha1, 20 s, direct
// wire) through Xen netfront/netback in the nested Xen host next to the same
// kernel pair under QEMU with virtio-net, with one and with four streams,
// and the boot time to both agents ready. `make bench-xen` prints it.
func BenchmarkXen(b *testing.B) {
	testenv.NeedXen(b)
	kernel := benchKernel(b)
	for _, bc := range []struct {
		name, hypervisor string
		streams          int
	}{
		{"qemu-virtio-1stream", HypervisorQEMU, 1},
		{"xen-pv-netfront-1stream", HypervisorXen, 1},
		{"qemu-virtio-4streams", HypervisorQEMU, 4},
		{"xen-pv-netfront-4streams", HypervisorXen, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				o := Options{
					Test: "natt-esp", Hypervisor: bc.hypervisor, Kernels: kernel.kernels, Modules: kernel.modules,
					Duration: 20 * time.Second, Topology: "direct", Crypto: "cbc-aes-sha1", Streams: bc.streams,
					InjectOffset: -1, RunDir: b.TempDir(),
				}
				r, err := Run(context.Background(), o)
				if err != nil {
					b.Fatal(err)
				}
				if r.Verdict != Pass {
					b.Fatalf("%s: %s", r.Verdict, r.Reason)
				}
				b.Logf("%s: %.2f Mbit/s of ESP", r.Path, r.ThroughputMbit)
				b.ReportMetric(r.ThroughputMbit, "Mbit/s")
				b.ReportMetric(r.BootSeconds, "boot-guest-s")
				b.ReportMetric(r.BootWallSeconds, "boot-wall-s")
			}
		})
	}
}
