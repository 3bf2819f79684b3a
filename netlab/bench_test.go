//go:build linux

package netlab

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkBareSocketpair is the baseline of BenchmarkRelay: the same
// sender and receiver on one socketpair with no relay between them. The
// difference in cpu-ns/frame is what the relay costs.
func BenchmarkBareSocketpair(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	in, out := os.NewFile(uintptr(fds[0]), "in"), os.NewFile(uintptr(fds[1]), "out")
	defer in.Close()
	defer out.Close()
	benchWire(b, in, out, udpFrame(b, macA, macB, directIPA, directIPB, 4500, 4500, make([]byte, 1500-42)))
}

// BenchmarkRelay measures the direct relay with 1500-byte frames, one
// datagram per write and per read as QEMU does, with and without capture.
// The sender, the relay and the receiver share the machine's cores, as the
// two QEMU processes and kbisect do.
//
// "capture" writes the pcap to $TMPDIR (a disk here), "capture-tmpfs" to
// /dev/shm: at full speed the relay outruns the disk, and the second shows
// the relay's own cost of capturing.
func BenchmarkRelay(b *testing.B) {
	for _, name := range []string{"nocapture", "capture", "capture-tmpfs"} {
		capture := name != "nocapture"
		b.Run(name, func(b *testing.B) {
			o := Options{Topology: TopologyDirect}
			switch name {
			case "capture":
				o.CaptureDir = b.TempDir()
			case "capture-tmpfs":
				dir, err := os.MkdirTemp("/dev/shm", "netlab-bench-")
				if err != nil {
					b.Skip(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
				o.CaptureDir = dir
			}
			l, err := New(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			g := l.Endpoints()
			benchWire(b, g[0].File, g[1].File, udpFrame(b, macA, macB, directIPA, directIPB, 4500, 4500, make([]byte, 1500-42)))
			l.Close()
			if capture {
				st, _ := l.Stats()
				fi, err := os.Stat(l.Captures()[0])
				if err != nil {
					b.Fatal(err)
				}
				if st.CaptureDrops != 0 || fi.Size() < int64(b.N)*1500 {
					b.Fatalf("capture lost frames: %+v, %d bytes", st, fi.Size())
				}
			}
		})
	}
}

// BenchmarkNAT measures the kernel NAT (conntrack, masquerade, forwarding
// between the taps) with 1500-byte UDP frames, with and without capture on
// both sides.
func BenchmarkNAT(b *testing.B) {
	needRoot(b)
	for _, capture := range []bool{false, true} {
		name := "nocapture"
		if capture {
			name = "capture"
		}
		b.Run(name, func(b *testing.B) {
			o := Options{Topology: TopologyNAT}
			if capture {
				o.CaptureDir = b.TempDir()
			}
			l, err := New(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			g := l.Endpoints()
			a, bg := startFakeGuest(b, g[0]), startFakeGuest(b, g[1])
			gw := a.resolve(natGateway)
			frame := udpFrame(b, macA, gw, "198.18.1.2", "198.19.0.2", 4500, 4500, make([]byte, 1500-42))
			// Let the NAT learn B's MAC first.
			a.write(frame)
			if bg.next(5*time.Second) == nil {
				b.Fatal("no frame through the NAT")
			}
			benchNAT(b, g[0].File, bg, frame)
			l.Close()
			st, _ := l.Stats()
			if st.CaptureDrops != 0 || st.Dropped != 0 {
				b.Logf("drops: capture %d, taps %d of %d frames", st.CaptureDrops, st.Dropped, 2*b.N)
			}
		})
	}
}

// benchWire sends b.N copies of frame into in and reads them from out.
func benchWire(b *testing.B, in, out *os.File, frame []byte) {
	done := make(chan error, 1)
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := in.Write(frame); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, maxFrame)
	for i := 0; i < b.N; i++ {
		if _, err := out.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	report(b, start, cpu0, len(frame))
}

// benchNAT sends b.N copies of frame into in, keeping at most a window of
// them in flight toward the guest to, and waits until they all arrived.
func benchNAT(b *testing.B, in *os.File, to *fakeGuest, frame []byte) {
	const window = 256 // below the tap's queue of 500: nothing is dropped
	to.countOnly.Store(true)
	base := to.received.Load()
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	start := time.Now()
	deadline := start.Add(time.Minute)
	for sent := uint64(0); sent < uint64(b.N); {
		if sent-(to.received.Load()-base) >= window {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d frames arrived", to.received.Load()-base, sent)
			}
			runtime.Gosched()
			continue
		}
		if _, err := in.Write(frame); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	for to.received.Load()-base < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d frames arrived", to.received.Load()-base, b.N)
		}
		time.Sleep(50 * time.Microsecond)
	}
	report(b, start, -1, len(frame)) // the sender spins: its CPU says nothing
}

// report adds frames/s and Mbit/s and, if cpu0 is not negative, the CPU
// time of the whole process (sender, wire, receiver) per frame: the
// difference between two runs is what the relay or the capture costs.
func report(b *testing.B, start time.Time, cpu0 time.Duration, size int) {
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "frames/s")
	b.ReportMetric(float64(b.N)*float64(size)*8/el/1e6, "Mbit/s")
	if cpu0 >= 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/frame")
	}
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNew measures setting a Lab up and tearing it down, with capture.
func BenchmarkNew(b *testing.B) {
	for _, topo := range []string{TopologyDirect, TopologyNAT} {
		b.Run(topo, func(b *testing.B) {
			if topo == TopologyNAT {
				needRoot(b)
			}
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				l, err := New(context.Background(), Options{Topology: topo, CaptureDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
