package esp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	benchOnce sync.Map // suite -> *benchCapture
	benchDir  string
)

type benchCapture struct {
	once sync.Once
	path string
	keys *Keys
	size int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchStreamBytes is each of the 4 streams' length in the benchmark
// capture: about 70 MB of capture in all.
const benchStreamBytes = 16 << 20

// benchCaptureFor writes, once per suite, a capture of 4 interleaved
// streams in 1380-byte segments (what the kernel sends on a 1500-byte MTU
// after ESP-in-UDP overhead), an ACK every two segments, as on the wire.
func benchCaptureFor(b *testing.B, suite string) *benchCapture {
	v, _ := benchOnce.LoadOrStore(suite, &benchCapture{})
	bc := v.(*benchCapture)
	bc.once.Do(func() {
		if benchDir == "" {
			d, err := os.MkdirTemp("", "esp-bench-")
			if err != nil {
				b.Fatal(err)
			}
			benchDir = d
		}
		dir := filepath.Join(benchDir, suite)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		const streams, seg = 4, 1380
		s := newSynthIn(b, dir, suite, "prng", streams, false)
		for i := 0; i < streams; i++ {
			s.handshake(i, noOpt())
		}
		n := 0
		for off := int64(0); off < benchStreamBytes; off += seg {
			for i := 0; i < streams; i++ {
				s.data(i, off, seg, noOpt())
				if n++; n%2 == 0 {
					s.ack(i, off+seg)
				}
			}
		}
		end := (benchStreamBytes + seg - 1) / seg * seg
		for i := 0; i < streams; i++ {
			s.fin(i, int64(end), noOpt())
		}
		bc.path, bc.keys = s.close()[0], s.keys
		st, err := os.Stat(bc.path)
		if err != nil {
			b.Fatal(err)
		}
		bc.size = st.Size()
	})
	if bc.path == "" {
		b.Fatal("benchmark capture not written")
	}
	return bc
}

// BenchmarkAnalyze measures analysis throughput in MB of capture per second
// on one core (GOMAXPROCS=1): the goal is >= 200 MB/s. Besides the usual
// wall-clock MB/s it reports MB per CPU second of the process (MB/cpu-s),
// which is what one core achieves even when other work shares the machine.
func BenchmarkAnalyze(b *testing.B) {
	for _, suite := range suiteNamesList {
		b.Run(suite, func(b *testing.B) {
			bc := benchCaptureFor(b, suite)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			b.SetBytes(bc.size)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: []string{bc.path}, Keys: bc.keys})
				if err != nil {
					b.Fatal(err)
				}
				if r.Wire != WireClean {
					b.Fatalf("wire %s: %s", r.Wire, r.Reason)
				}
			}
			b.StopTimer()
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(bc.size)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
			}
			b.ReportMetric(float64(bc.size)/1e6, "MB/capture")
			if testing.Verbose() {
				fmt.Printf("%s: %.1f MB capture\n", suite, float64(bc.size)/1e6)
			}
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAnalyzeLong analyses a capture of ten minutes of one stream at
// 20 Mbit/s (1.7 GB, what a long kernel run leaves): the wall and CPU time a
// user waits for. KBISECT_BENCH_MINUTES changes the length.
func BenchmarkAnalyzeLong(b *testing.B) {
	minutes := 10.0
	if v := os.Getenv("KBISECT_BENCH_MINUTES"); v != "" {
		fmt.Sscan(v, &minutes)
	}
	bytes := int64(minutes * 60 * 20e6 / 8)
	dir := b.TempDir()
	const seg = 1380
	s := newSynthIn(b, dir, "cbc-aes-sha1", "prng", 1, false)
	s.handshake(0, noOpt())
	n := 0
	for off := int64(0); off < bytes; off += seg {
		s.data(0, off, seg, noOpt())
		if n++; n%2 == 0 {
			s.ack(0, off+seg)
		}
	}
	s.fin(0, (bytes+seg-1)/seg*seg, noOpt())
	path, keys := s.close()[0], s.keys
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: []string{path}, Keys: keys})
		if err != nil || r.Wire != WireClean {
			b.Fatalf("%v, wire %v", err, r)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/analysis")
	b.ReportMetric(float64(st.Size())/1e9, "GB/capture")
}
