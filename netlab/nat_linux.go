package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Address plan and names of the nat topology. The interface names live in
// the private namespace only.
const (
	natIfInside   = "inside"
	natIfOutside  = "outside"
	natMACInside  = "02:6b:62:00:01:01"
	natMACOutside = "02:6b:62:00:01:02"
	natAddrA      = "198.18.1.2/24"
	natGateway    = "198.18.1.1"
	natAddrIn     = "198.18.1.1/24"
	natAddrOut    = "198.19.0.1/24"
	natIPOut      = "198.19.0.1"
	natAddrB      = "198.19.0.2/24"
	natIPB        = "198.19.0.2"
)

// captureRcvBuf is the receive buffer asked for each AF_PACKET socket:
// about 14,000 full-size frames, a second of 150 Mbit/s, so a capture
// goroutine starved by busy guests does not drop.
const captureRcvBuf = 32 << 20

// nat is a real Linux NAT in a private network namespace.
type nat struct {
	nsFd  int
	nft   string
	g     [2]Endpoint
	tapIx [2]int // ifindex of inside, outside
	nl    *netlink.Handle
	caps  []*natCapture
	paths []string
	fault bool
	// final is the conntrack table as Close found it.
	final  []Mapping
	closed bool

	wg    sync.WaitGroup
	errMu sync.Mutex
	err   error
}

// natCapture is one AF_PACKET capture point.
type natCapture struct {
	conn  *batchConn
	pcap  *pcapFile
	drops atomic.Uint64 // kernel drops seen so far
}

func findNft() (string, error) {
	if p, err := exec.LookPath("nft"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nft", "/sbin/nft"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("netlab: nat topology needs nft: install nftables (apt-get install nftables)")
}

func newNAT(ctx context.Context, o Options) (_ *nat, err error) {
	n := &nat{nsFd: -1, fault: o.Fault != nil}
	if n.nft, err = findNft(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.release()
		}
	}()
	if n.nsFd, err = newNetns(); err != nil {
		return nil, err
	}
	var tapFd, capFd [2]int
	for i := range 2 {
		tapFd[i], capFd[i] = -1, -1
	}
	defer func() {
		if err != nil {
			for i := range 2 {
				closeFd(tapFd[i])
				closeFd(capFd[i])
			}
		}
	}()
	names := [2]string{natIfInside, natIfOutside}
	macs := [2]string{natMACInside, natMACOutside}
	addrs := [2]string{natAddrIn, natAddrOut}
	err = inNetns(n.nsFd, func() error {
		// No IPv6 in the namespace: no router solicitations or DAD in the
		// captures. Absent when the host disabled IPv6.
		for _, k := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
			if err := writeSysctl(k, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		var err error
		if n.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER); err != nil {
			return fmt.Errorf("netlab: netlink: %w", err)
		}
		for i, name := range names {
			if tapFd[i], err = openTap(name); err != nil {
				return err
			}
			if n.tapIx[i], err = configureLink(n.nl, name, macs[i], addrs[i], o.MTU); err != nil {
				return err
			}
		}
		cmd := exec.CommandContext(ctx, n.nft, "-f", "-")
		cmd.Stdin = strings.NewReader(NATRuleset(natIfInside, natIfOutside, o.Fault))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("netlab: load nftables ruleset: %w: %s", err, strings.TrimSpace(string(out)))
		}
		if o.CaptureDir == "" {
			return nil
		}
		for i := range names {
			if capFd[i], err = openCapture(n.tapIx[i]); err != nil {
				return fmt.Errorf("netlab: capture on %s: %w", names[i], err)
			}
		}
		return waitRxTimestamps(n.nl)
	})
	if err != nil {
		return nil, err
	}
	n.g = [2]Endpoint{
		{Kind: KindTap, MAC: macA, Addr: natAddrA, Gateway: natGateway, PeerView: natIPB, MTU: o.MTU},
		{Kind: KindTap, MAC: macB, Addr: natAddrB, PeerView: natIPOut, MTU: o.MTU},
	}
	for i := range 2 {
		n.g[i].File = os.NewFile(uintptr(tapFd[i]), "netlab-tap-"+names[i])
		tapFd[i] = -1
	}
	if o.CaptureDir == "" {
		return n, nil
	}
	slot := min(o.Snaplen, maxFrame)
	for i, name := range []string{"nat-inside.pcap", "nat-outside.pcap"} {
		c := &natCapture{}
		n.caps = append(n.caps, c)
		if c.conn, err = newBatchConn(capFd[i], "netlab-capture-"+names[i]); err != nil {
			capFd[i] = -1
			return nil, err
		}
		capFd[i] = -1
		if c.pcap, err = createPcap(filepath.Join(o.CaptureDir, name), o.Snaplen); err != nil {
			return nil, err
		}
	}
	for _, c := range n.caps {
		n.paths = append(n.paths, c.pcap.path)
		n.wg.Add(1)
		go n.runCapture(c, newFrameBatch(batchSize, slot, true))
	}
	return n, nil
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// openTap creates a non-persistent tap (no packet info, no vnet header) in
// the calling thread's namespace. It disappears when its last fd closes.
func openTap(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("netlab: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlab: tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlab: create tap %s: %w", name, err)
	}
	return fd, nil
}

// configureLink gives a link its MAC, MTU and address and brings it up.
func configureLink(h *netlink.Handle, name, mac, cidr string, mtu int) (int, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("netlab: link %s: %w", name, err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return 0, fmt.Errorf("netlab: link %s: %w", name, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return 0, fmt.Errorf("netlab: link %s: %w", name, err)
	}
	if err := h.LinkSetHardwareAddr(link, hw); err != nil {
		return 0, fmt.Errorf("netlab: link %s: set MAC: %w", name, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return 0, fmt.Errorf("netlab: link %s: set MTU %d: %w", name, mtu, err)
	}
	if err := h.AddrAdd(link, addr); err != nil {
		return 0, fmt.Errorf("netlab: link %s: add %s: %w", name, cidr, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("netlab: link %s: up: %w", name, err)
	}
	return link.Attrs().Index, nil
}

// openCapture opens a non-blocking AF_PACKET socket that sees every frame
// in and out of ifindex, with kernel receive timestamps.
func openCapture(ifindex int) (int, error) {
	// Protocol 0 receives nothing until bind names the interface.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureRcvBuf); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, captureRcvBuf)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// waitRxTimestamps returns once the kernel stamps packets when they arrive.
// Enabling timestamps (SO_TIMESTAMPNS on the capture sockets) flips a
// global static key from a workqueue; until then AF_PACKET stamps a frame
// when it is read, which would put the first frames of a capture out of
// order. It probes with a UDP socket on the namespace's loopback. Call it
// from inNetns.
func waitRxTimestamps(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netlab: loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netlab: loopback up: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("netlab: timestamp probe: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("netlab: timestamp probe: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("netlab: timestamp probe: %w", err)
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("netlab: timestamp probe: %w", err)
	}
	buf, oob := make([]byte, 16), make([]byte, tsSpace)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if err := unix.Sendto(fd, []byte("ts"), 0, self); err != nil {
			return fmt.Errorf("netlab: timestamp probe: %w", err)
		}
		time.Sleep(time.Millisecond)
		before := time.Now().UnixNano()
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		if ts := parseTimestampNS(oob[:oobn]); ts != 0 && ts < before {
			return nil
		}
	}
	return nil // stamps stay approximate for the first frames; not fatal
}

func (n *nat) runCapture(c *natCapture, b *frameBatch) {
	defer n.wg.Done()
	drained := 0
	for {
		if err := c.conn.recv(b); err != nil {
			if !errors.Is(err, errStopped) {
				n.setErr(fmt.Errorf("netlab: capture %s: %w", c.pcap.path, err))
			}
			return
		}
		if c.conn.stopping.Load() {
			if drained++; drained > drainBatches {
				return
			}
		}
		now := time.Now()
		c.pcap.mu.Lock()
		for i := 0; i < b.n; i++ {
			c.pcap.writeLocked(b.time(i, now), b.frame(i), b.lens[i])
		}
		c.pcap.mu.Unlock()
	}
}

// kernelDrops adds the socket's drop count since the last call (reading
// PACKET_STATISTICS resets it) to c.drops.
func (c *natCapture) kernelDrops() uint64 {
	c.conn.rc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.drops.Add(uint64(st.Drops))
		}
	})
	return c.drops.Load()
}

func (n *nat) setErr(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.errMu.Unlock()
}

func (n *nat) endpoints() [2]Endpoint { return n.g }

func (n *nat) captures() []string { return n.paths }

func (n *nat) stats() (Stats, error) {
	var s Stats
	for i, c := range []*Counter{&s.AtoB, &s.BtoA} {
		link, err := n.nl.LinkByIndex(n.tapIx[i])
		if err != nil {
			return s, fmt.Errorf("netlab: stats of tap %d: %w", i, err)
		}
		if st := link.Attrs().Statistics; st != nil {
			// What the guest writes into its tap is the tap's rx.
			c.Frames, c.Bytes = st.RxPackets, st.RxBytes
			s.Dropped += st.TxDropped
		}
	}
	for _, c := range n.caps {
		s.CaptureDrops += c.kernelDrops() + c.pcap.dropCount()
	}
	if n.fault {
		hits, err := n.faultHits()
		if err != nil {
			return s, err
		}
		s.Faults = hits
	}
	return s, nil
}

// faultHits reads the counter of the fault rule.
func (n *nat) faultHits() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	err := inNetns(n.nsFd, func() error {
		var err error
		out, err = exec.CommandContext(ctx, n.nft, "--json", "list", "chain", "ip", NATTable, "fault").Output()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netlab: read fault counter: %w", err)
	}
	return parseNftCounter(out)
}

// parseNftCounter sums the packets of the counters in nft --json output.
func parseNftCounter(out []byte) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("netlab: parse nft counter: %w", err)
	}
	var sum uint64
	found := false
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if e.Counter != nil {
				sum += e.Counter.Packets
				found = true
			}
		}
	}
	if !found {
		return 0, errors.New("netlab: parse nft counter: no counter in the fault chain")
	}
	return sum, nil
}

func (n *nat) close() (Stats, error) {
	for _, c := range n.caps {
		c.conn.stop()
	}
	n.wg.Wait()
	s, serr := n.stats()
	var merr error
	n.final, merr = n.mappings()
	n.closed = true
	err := n.release()
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return s, errors.Join(n.err, serr, merr, err)
}

func (n *nat) mappings() ([]Mapping, error) {
	if n.closed {
		return n.final, nil
	}
	flows, err := n.nl.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("netlab: read the NAT's conntrack table: %w", err)
	}
	inside := netip.MustParsePrefix(natAddrIn).Masked()
	var ms []Mapping
	for _, f := range flows {
		src, _ := netip.AddrFromSlice(f.Forward.SrcIP)
		if !inside.Contains(src.Unmap()) {
			continue // not from A: the NAT's own traffic, or refused
		}
		out, _ := netip.AddrFromSlice(f.Reverse.DstIP)
		peer, _ := netip.AddrFromSlice(f.Forward.DstIP)
		ms = append(ms, Mapping{
			Proto:   f.Forward.Protocol,
			Inside:  netip.AddrPortFrom(src.Unmap(), f.Forward.SrcPort),
			Outside: netip.AddrPortFrom(out.Unmap(), f.Reverse.DstPort),
			Peer:    netip.AddrPortFrom(peer.Unmap(), f.Forward.DstPort),
		})
	}
	return ms, nil
}

// release closes every file; it is safe on a half-built nat. The namespace
// goes away with the last of them (and QEMU's copies of the taps).
func (n *nat) release() error {
	var errs []error
	for _, c := range n.caps {
		if c.pcap != nil {
			errs = append(errs, c.pcap.close())
		}
		if c.conn != nil {
			c.conn.close()
		}
	}
	n.caps = nil
	for i := range n.g {
		if n.g[i].File != nil {
			n.g[i].File.Close()
		}
	}
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	closeFd(n.nsFd)
	n.nsFd = -1
	return errors.Join(errs...)
}
