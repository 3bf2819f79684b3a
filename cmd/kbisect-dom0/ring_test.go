package main

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestPacketRing captures real UDP datagrams of many sizes on the host's
// loopback through the receive ring, read while they are sent: every one
// arrives whole, twice (loopback shows a packet leaving and arriving),
// with its length and a timestamp of its time, and the ring drops none.
func TestPacketRing(t *testing.T) {
	testenv.NeedRoot(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := newPacketRing(lo.Index)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.close()
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	port := dst.LocalAddr().(*net.UDPAddr).Port
	src, err := net.DialUDP("udp4", nil, dst.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	go func() { // the receiver drains its socket; the test reads the ring
		buf := make([]byte, 1<<16)
		for {
			if _, err := dst.Read(buf); err != nil {
				return
			}
		}
	}()

	const n = 20000
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			b := make([]byte, 8+i%1400)
			binary.BigEndian.PutUint64(b, uint64(i))
			for j := 8; j < len(b); j++ {
				b[j] = byte(i + j)
			}
			if _, err := src.Write(b); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	seen := make([]int, n)
	var bad int
	keep := func(ts time.Time, data []byte, length int) {
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || int(udp.DstPort) != port {
			return // other loopback traffic of the host
		}
		i := int(binary.BigEndian.Uint64(udp.Payload))
		ok := i < n && len(udp.Payload) == 8+i%1400 && length == len(data) && !ts.Before(start.Add(-time.Second)) && ts.Before(time.Now().Add(time.Second))
		for j := 8; ok && j < len(udp.Payload); j++ {
			ok = udp.Payload[j] == byte(i+j)
		}
		if !ok {
			bad++
			return
		}
		seen[i]++
	}
	done := false
	for {
		k, err := ring.read(10*ringRetire, keep)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 && done {
			break
		}
		if !done {
			select {
			case err := <-sent:
				if err != nil {
					t.Fatal(err)
				}
				done = true
			default:
			}
		}
	}
	missing := 0 // datagrams not seen exactly twice
	for _, s := range seen {
		if s != 2 {
			missing++
		}
	}
	drops, err := ring.drops()
	if err != nil || drops != 0 || missing != 0 || bad != 0 {
		t.Errorf("%d of %d datagrams not seen twice, %d copies wrong, %d dropped by the ring (%v)", missing, n, bad, drops, err)
	}
}

// TestPacketRingInterfaceGone: when the interface goes away (a domU
// destroyed takes its vif), read says so at once instead of waiting or
// spinning, and the capture can end. The interface is a tap in a private
// network namespace, which disappears with its fd.
func TestPacketRingInterfaceGone(t *testing.T) {
	testenv.NeedRoot(t)
	type outcome struct {
		err     error
		elapsed time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		// The namespace is this thread's: the thread ends with the
		// goroutine, never unlocked.
		runtime.LockOSThread()
		fail := func(err error) { done <- outcome{err: err} }
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fail(err)
			return
		}
		tap, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		ifr, _ := unix.NewIfreq("kbxring0")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(tap, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(tap)
			fail(err)
			return
		}
		ifi, err := net.InterfaceByName("kbxring0")
		if err != nil {
			unix.Close(tap)
			fail(err)
			return
		}
		ring, err := newPacketRing(ifi.Index)
		if err != nil {
			unix.Close(tap)
			fail(err)
			return
		}
		defer ring.close()
		unix.Close(tap) // the tap, and the interface, go away
		start := time.Now()
		var rerr error
		for time.Since(start) < 5*time.Second && rerr == nil {
			_, rerr = ring.read(time.Second, func(time.Time, []byte, int) {})
		}
		done <- outcome{rerr, time.Since(start)}
	}()
	o := <-done
	if !ifaceGone(o.err) || o.elapsed > 2*time.Second {
		t.Errorf("read after the interface went away: %v after %v, want ENETDOWN at once", o.err, o.elapsed)
	}
}
