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
// Datagrams sent after the ring is made but before it is bound are not in
// it: a ring takes no frame of any interface before its bind.
func TestPacketRing(t *testing.T) {
	testenv.NeedRoot(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := newPacketRing()
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
	const n, early = 20000, 1000 // datagrams after and before the bind
	datagram := func(i int) []byte {
		b := make([]byte, 8+i%1400)
		binary.BigEndian.PutUint64(b, uint64(i))
		for j := 8; j < len(b); j++ {
			b[j] = byte(i + j)
		}
		return b
	}
	for i := n; i < n+early; i++ {
		if _, err := src.Write(datagram(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ring.bind(lo.Index); err != nil {
		t.Fatal(err)
	}
	go func() { // the receiver drains its socket; the test reads the ring
		buf := make([]byte, 1<<16)
		for {
			if _, err := dst.Read(buf); err != nil {
				return
			}
		}
	}()

	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := src.Write(datagram(i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	seen := make([]int, n)
	var bad, before int
	keep := func(ts time.Time, data []byte, length int) {
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || int(udp.DstPort) != port {
			return // other loopback traffic of the host
		}
		i := int(binary.BigEndian.Uint64(udp.Payload))
		if i >= n && i < n+early {
			before++
			return
		}
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
	if err != nil || drops != 0 || missing != 0 || bad != 0 || before != 0 {
		t.Errorf("%d of %d datagrams not seen twice, %d copies wrong, %d dropped by the ring (%v), %d copies of datagrams sent before the bind", missing, n, bad, drops, err, before)
	}
}

// TestPacketRingInterfaceDown: a ring bound to an interface that is still
// down (the hotplug renames a vif before it brings it up) hears ENETDOWN
// once, then takes the interface's frames when it comes up; when the
// interface goes away (a domU destroyed takes its vif), read says so once
// and then waits out its timeouts, neither spinning nor failing. The
// interface is a tap in a private network namespace: frames written to its
// fd arrive on it, and it disappears with the fd.
func TestPacketRingInterfaceDown(t *testing.T) {
	testenv.NeedRoot(t)
	const frames = 500
	type outcome struct {
		step                 string
		err                  error
		atBind, afterGone    error
		seen, wrong, retries int
		idle                 time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		// The namespace is this thread's: the thread ends with the
		// goroutine, never unlocked.
		runtime.LockOSThread()
		var o outcome
		defer func() { done <- o }()
		step := func(name string, err error) bool {
			if err != nil {
				o.step, o.err = name, err
			}
			return err == nil
		}
		if !step("unshare", unix.Unshare(unix.CLONE_NEWNET)) {
			return
		}
		tap, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if !step("open tun", err) {
			return
		}
		tapOpen := true
		defer func() {
			if tapOpen {
				unix.Close(tap)
			}
		}()
		ifr, _ := unix.NewIfreq("kbxring0")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if !step("TUNSETIFF", unix.IoctlIfreq(tap, unix.TUNSETIFF, ifr)) {
			return
		}
		ifi, err := net.InterfaceByName("kbxring0")
		if !step("find the tap", err) {
			return
		}
		ring, err := newPacketRing()
		if !step("ring", err) {
			return
		}
		defer ring.close()
		if !step("bind", ring.bind(ifi.Index)) {
			return
		}
		_, o.atBind = ring.read(100*time.Millisecond, func(time.Time, []byte, int) {})
		// Up, as the hotplug does.
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if !step("socket", err) {
			return
		}
		up, _ := unix.NewIfreq("kbxring0")
		up.SetUint16(unix.IFF_UP)
		err = unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, up)
		unix.Close(s)
		if !step("up", err) {
			return
		}
		for i := 0; i < frames; i++ {
			f := make([]byte, 14+8+i%1000)
			copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5})
			binary.BigEndian.PutUint64(f[14:], uint64(i))
			if _, err := unix.Write(tap, f); !step("write a frame", err) {
				return
			}
		}
		got := make([]bool, frames)
		keep := func(_ time.Time, data []byte, _ int) {
			if len(data) < 22 || binary.BigEndian.Uint16(data[12:]) != 0x88b5 {
				return // the kernel's own frames (IPv6 router solicitations)
			}
			i := int(binary.BigEndian.Uint64(data[14:]))
			if i >= frames || len(data) != 14+8+i%1000 || got[i] {
				o.wrong++
				return
			}
			got[i] = true
			o.seen++
		}
		for o.seen < frames && o.retries < 20 {
			if _, err := ring.read(10*ringRetire, keep); !step("read", err) {
				return
			}
			o.retries++
		}
		unix.Close(tap) // the tap, and the interface, go away
		tapOpen = false
		for o.retries = 0; o.afterGone == nil && o.retries < 20; o.retries++ {
			_, o.afterGone = ring.read(time.Second, keep)
		}
		start := time.Now()
		for i := 0; i < 3; i++ {
			if _, err := ring.read(100*time.Millisecond, keep); !step("read after ENETDOWN", err) {
				return
			}
		}
		o.idle = time.Since(start)
	}()
	o := <-done
	if o.err != nil {
		t.Fatalf("%s: %v", o.step, o.err)
	}
	if !ifaceDown(o.atBind) {
		t.Errorf("read after binding to an interface that is down: %v, want ENETDOWN", o.atBind)
	}
	if o.seen != frames || o.wrong != 0 {
		t.Errorf("%d of %d frames seen once after the interface came up, %d wrong or twice", o.seen, frames, o.wrong)
	}
	if !ifaceDown(o.afterGone) {
		t.Errorf("read after the interface went away: %v, want ENETDOWN", o.afterGone)
	}
	if o.idle < 250*time.Millisecond {
		t.Errorf("three reads of 100 ms after ENETDOWN returned in %v: the reader spins", o.idle)
	}
}
