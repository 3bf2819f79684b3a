package testcases_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/linuxsrc"
	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/testcases"
)

// BenchmarkThroughput measures what one run tests per minute, for QEMU
// (virtio-net) and Xen PV (netfront) pairs, direct and through the NAT,
// with one and four streams, with Debian's 6.1 and the seed's 3.14.5: ESP
// Mbit/s (cbc-aes-sha1, MTU 1500), ESP packets per second, and the ratio to
// plain TCP in the same pair and wire (one stream). Each row also reports
// the host's load average when the run started: netfront's throughput
// depends on it. 3.14.5 corrupts ESP under Xen with AES-NI (issue #15):
// such a run is a fail, and its throughput counts all the same. `make
// bench-throughput` prints the table (-benchtime 1x; 24 runs of 20 s, each
// with its boot). With KBISECT_BENCH_BESIDE=build every row runs beside a
// kernel build (`make -j2` of Debian's 6.1 source, in a session of its own
// as a build from another terminal would be): what a user's machine gives
// a bisection while they work.
func BenchmarkThroughput(b *testing.B) {
	testenv.NeedRoot(b)
	testenv.NeedXen(b)
	var beside func(testing.TB) func()
	switch os.Getenv("KBISECT_BENCH_BESIDE") {
	case "":
	case "build":
		beside = besideBuild(b)
	default:
		b.Fatalf("KBISECT_BENCH_BESIDE=%q: give build, or leave it unset", os.Getenv("KBISECT_BENCH_BESIDE"))
	}
	deb, debMods := testenv.DebianKernel(b)
	old := oldKernel(b, testenv.Tarball3_14)
	oldK, oldMods := testcases.BootImage(old)
	kernels := []struct{ name, kernel, modules string }{
		{"6.1", deb, debMods},
		{"3.14.5", oldK, oldMods},
	}
	only := os.Getenv("KBISECT_BENCH_ONLY") // a substring of the rows to run
	for _, k := range kernels {
		for _, hv := range []string{testcases.HypervisorQEMU, testcases.HypervisorXen} {
			for _, topo := range []string{"direct", "nat"} {
				var tcp float64 // the same pair's plain TCP, one stream
				for _, streams := range []int{1, 4} {
					name := fmt.Sprintf("%s/%s/%s/%dstream", k.name, hv, topo, streams)
					if only != "" && !strings.Contains(name, only) {
						continue
					}
					b.Run(name, func(b *testing.B) {
						if beside != nil {
							defer beside(b)()
						}
						for i := 0; i < b.N; i++ {
							if streams == 1 {
								r, _ := throughputRun(b, "tcp", k.kernel, k.modules, hv, topo, streams)
								tcp = r.ThroughputMbit
							}
							r, load := throughputRun(b, "natt-esp", k.kernel, k.modules, hv, topo, streams)
							b.ReportMetric(r.ThroughputMbit, "esp-Mbit/s")
							b.ReportMetric(r.Wire.ESPPerSecond, "esp-pkt/s")
							if tcp > 0 {
								b.ReportMetric(r.ThroughputMbit/tcp, "esp/tcp")
							}
							b.ReportMetric(load, "load1")
							b.Logf("%s %s: %s; %s", r.Path, r.Verdict, r.Reason, r.Wire.Verdict)
						}
					})
				}
			}
		}
	}
}

// throughputRun runs test for 20 s on a pair of kernel and returns its
// report and the host's 1-minute load average when it started. An
// infrastructure error stops the benchmark; a corruption does not.
func throughputRun(b *testing.B, test, kernel, modules, hv, topo string, streams int) (*testcases.Report, float64) {
	b.Helper()
	o := testcases.Options{
		Test: test, Hypervisor: hv, Topology: topo, Streams: streams, Duration: 20 * time.Second,
		Crypto: "cbc-aes-sha1", Pattern: "zero", Capture: test == "natt-esp", InjectOffset: -1, RunDir: b.TempDir(),
	}
	if test == "tcp" {
		o.Crypto = ""
	}
	o.Kernels = [2]string{kernel, kernel}
	o.Modules = [2]string{modules, modules}
	load := loadAverage(b)
	r, err := testcases.Run(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	if r.Verdict == testcases.Error {
		b.Fatalf("%s %s on %s: %s", test, r.Verdict, r.Path, r.Reason)
	}
	return r, load
}

// besideBuild unpacks Debian's 6.1 source once and returns a function that
// starts building it (defconfig, make -j2, over and over) in a session of
// its own and returns what stops it.
func besideBuild(b *testing.B) func(testing.TB) func() {
	testenv.NeedLinuxSource(b)
	dir := b.TempDir()
	tar := exec.Command("tar", "-xf", linuxsrc.Tarball, "-C", dir, "--strip-components=1")
	if out, err := tar.CombinedOutput(); err != nil {
		b.Fatalf("unpack %s: %v: %s", linuxsrc.Tarball, err, out)
	}
	return func(tb testing.TB) func() {
		// Each pass starts from clean, so the load never runs out.
		loop := "make O=out defconfig >/dev/null 2>&1; while :; do make -j2 O=out >/dev/null 2>&1; make O=out clean >/dev/null 2>&1; done"
		cmd := exec.Command("sh", "-c", loop)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start the build beside: %v", err)
		}
		time.Sleep(30 * time.Second) // past defconfig, into the compiler
		return func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	}
}

// loadAverage is the host's 1-minute load average.
func loadAverage(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	var l float64
	if _, err := fmt.Sscan(string(data), &l); err != nil {
		b.Fatalf("/proc/loadavg: %v", err)
	}
	return l
}
