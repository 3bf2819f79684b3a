package vm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kbisect/kbisect/internal/testenv"
)

// dgramWire returns the two ends of an AF_UNIX SOCK_DGRAM socketpair.
func dgramWire(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "wire-a"), os.NewFile(uintptr(fds[1]), "wire-b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestPairWire boots two guests joined by a dgram socketpair; each brings
// eth0 up and must receive a raw Ethernet frame from the other.
func TestPairWire(t *testing.T) {
	needQEMU(t)
	ki, err := InspectKernel(testKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	initrd := testInitramfs(t, modulesFor(t, ki.Release, "virtio_pci", "virtio_net")...)
	wa, wb := dgramWire(t)
	a := testConfig(t, "a", initrd, "ping")
	a.Netdevs = []Netdev{{Kind: NetDgram, File: wa}}
	b := testConfig(t, "b", initrd, "ping")
	b.Netdevs = []Netdev{{Kind: NetDgram, File: wb}}
	p, err := StartPair(testCtx(t), a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	collect := func(g *Guest) chan []string {
		ch := make(chan []string, 1)
		go func() {
			var lines []string
			for l := range g.Lines() {
				lines = append(lines, l)
			}
			ch <- lines
		}()
		return ch
	}
	la, lb := collect(p.A), collect(p.B)
	oa, ob := p.Wait()
	linesA, linesB := <-la, <-lb
	for _, c := range []struct {
		o     *Outcome
		lines []string
		self  Config
		peer  Config
	}{{oa, linesA, a, b}, {ob, linesB, b, a}} {
		if c.o.Err() != nil {
			t.Errorf("guest %s: %v\n%s", c.o.Name, c.o.Err(), c.o.ConsoleTail)
			continue
		}
		all := strings.Join(c.lines, "\n")
		selfMAC := c.self.Netdevs[0].MAC
		if selfMAC == nil {
			selfMAC = defaultMAC(c.self.Name, 0)
		}
		peerMAC := defaultMAC(c.peer.Name, 0)
		if !strings.Contains(all, `"type":"eth0","uptime"`) || !strings.Contains(all, selfMAC.String()) {
			t.Errorf("guest %s did not see eth0 with MAC %s:\n%s", c.o.Name, selfMAC, all)
		}
		if want := "kbisect-frame from " + strings.ReplaceAll(peerMAC.String(), ":", ""); !strings.Contains(all, want) {
			t.Errorf("guest %s did not receive %q:\n%s", c.o.Name, want, all)
		}
	}
	assertGone(t, p.A)
	assertGone(t, p.B)
}

// TestPairPeerFailure: when one guest panics the other is stopped.
func TestPairPeerFailure(t *testing.T) {
	needQEMU(t)
	initrd := testInitramfs(t)
	p, err := StartPair(testCtx(t), testConfig(t, "a", initrd, "panic"), testConfig(t, "b", initrd, "hang"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	oa, ob := p.Wait()
	if oa.Kind != ExitPanic {
		t.Errorf("a: %s (%v), want panic", oa.Kind, oa.Err())
	}
	if ob.Kind != ExitKilled || !strings.Contains(ob.Reason, "peer a ended") || !errors.Is(ob.Err(), ErrKilled) {
		t.Errorf("b: %s (%q), want killed because of peer a", ob.Kind, ob.Reason)
	}
	assertGone(t, p.A)
	assertGone(t, p.B)
}

func TestPairStartError(t *testing.T) {
	needQEMU(t)
	initrd := testInitramfs(t)
	tempRoot = t.TempDir()
	defer func() { tempRoot = "" }()
	bad := testConfig(t, "b", initrd, "hello")
	bad.Kernel = "/etc/hostname"
	_, err := StartPair(testCtx(t), testConfig(t, "a", initrd, "hang"), bad)
	if err == nil || !strings.Contains(err.Error(), "not a Linux kernel image") {
		t.Fatalf("StartPair = %v, want b's kernel error", err)
	}
	if left, _ := os.ReadDir(tempRoot); len(left) > 0 {
		t.Errorf("%d temp dirs left behind", len(left))
	}
}

// openTap creates a tap interface inside a new, private network namespace
// (so the host's network is untouched) and returns its /dev/net/tun file.
// The namespace and the interface vanish when the file is closed.
func openTap(t *testing.T) *os.File {
	t.Helper()
	type res struct {
		f   *os.File
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// This thread's namespace changes: never unlock it, so the Go
		// runtime discards the thread when the goroutine ends.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			ch <- res{err: err}
			return
		}
		var ifr [40]byte
		copy(ifr[:], "kbtap0")
		*(*uint16)(unsafe.Pointer(&ifr[16])) = syscall.IFF_TAP | syscall.IFF_NO_PI
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
			f.Close()
			ch <- res{err: e}
			return
		}
		ch <- res{f: f}
	}()
	r := <-ch
	if r.err != nil {
		testenv.Missing(t, fmt.Sprintf("cannot create a tap in a new network namespace (needs root): %v", r.err))
	}
	t.Cleanup(func() { r.f.Close() })
	return r.f
}

// TestTapNIC: a guest with its NIC on a tap file sees eth0.
func TestTapNIC(t *testing.T) {
	needQEMU(t)
	ki, err := InspectKernel(testKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	initrd := testInitramfs(t, modulesFor(t, ki.Release, "virtio_pci", "virtio_net")...)
	cfg := testConfig(t, "tap", initrd, "ping")
	cfg.Netdevs = []Netdev{{Kind: NetTap, File: openTap(t)}}
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-g.Lines():
			if !ok {
				o := g.Wait()
				t.Fatalf("no eth0 line; outcome %v\n%s", o.Err(), o.ConsoleTail)
			}
			if strings.Contains(l, `"type":"eth0"`) {
				if !strings.Contains(l, defaultMAC("tap", 0).String()) {
					t.Errorf("eth0 line %q lacks the MAC", l)
				}
				return
			}
		case <-deadline:
			t.Fatal("no eth0 line in 3 minutes")
		}
	}
}
