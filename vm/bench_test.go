package vm

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// BenchmarkBoot measures, per boot, the wall time from QEMU's launch to the
// first line on the agent channel (s/first-line) and the guest's uptime in
// that line (guest-s). Sub-benchmarks compare the backend's choices on
// Debian's kernel; KBISECT_BENCH_KERNEL=IMAGE adds the same for another
// kernel (a tinyconfig build: it needs virtio, 8250 console, devtmpfs built
// in).
//
//	go test -bench . -run '^$' ./vm/
func BenchmarkBoot(b *testing.B) {
	needQEMU(b)
	initrd := testInitramfs(b)
	type variant struct {
		name   string
		kernel string
		mod    func(*Config)
	}
	debian := testKernel(b)
	variants := []variant{
		{"debian/default", debian, func(*Config) {}},
		{"debian/seabios", debian, func(c *Config) { c.QEMU.Firmware = "seabios" }},
		{"debian/q35", debian, func(c *Config) { c.QEMU.Machine = "q35" }},
		{"debian/no-pvh", debian, func(c *Config) { c.QEMU.NoPVH = true }},
	}
	if k := os.Getenv("KBISECT_BENCH_KERNEL"); k != "" {
		variants = append(variants,
			variant{"custom/default", k, func(*Config) {}},
			variant{"custom/no-pvh", k, func(c *Config) { c.QEMU.NoPVH = true }},
		)
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			var wall time.Duration
			var up float64
			for i := 0; i < b.N; i++ {
				cfg := testConfig(b, "bench", initrd, "hello")
				cfg.Kernel = v.kernel
				cfg.Logf = nil
				v.mod(&cfg)
				// Warm the PVH cache outside the timing.
				PVHImage(testCtx(b), v.kernel)
				w, u := bootOnce(b, cfg)
				wall += w
				up += u
			}
			b.ReportMetric(wall.Seconds()/float64(b.N), "s/first-line")
			b.ReportMetric(up/float64(b.N), "guest-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// bootOnce boots cfg and returns the wall time from launch to the first
// agent line and the guest uptime the line reports.
func bootOnce(t testing.TB, cfg Config) (wall time.Duration, uptime float64) {
	t.Helper()
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	line, wall := firstLine(t, g)
	var ev struct {
		Uptime float64 `json:"uptime"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "KBISECT-EVENT ")), &ev); err != nil {
		t.Fatalf("agent line %q: %v", line, err)
	}
	if o := g.Wait(); o.Err() != nil {
		t.Fatalf("%v\n%s", o.Err(), o.ConsoleTail)
	}
	return wall, ev.Uptime
}
