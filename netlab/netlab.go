// Package netlab is the wire between the two guests of a test pair.
//
// Two topologies exist:
//
//   - "direct": each guest gets one end of an AF_UNIX SOCK_DGRAM socketpair
//     (QEMU: -netdev dgram,local.type=fd); a relay in this process forwards
//     every datagram (one Ethernet frame) to the other guest, records it in a
//     pcap and applies an optional Fault.
//   - "nat": a real Linux NAT (conntrack, nftables "masquerade random") in a
//     private, unnamed network namespace. Each guest gets the fd of a
//     non-persistent tap in that namespace (QEMU: -netdev tap,fd=N). The
//     inside and the outside of the NAT are captured with AF_PACKET sockets.
//
// The address plan lives in 198.18.0.0/15 (RFC 2544 benchmark range, never
// routed):
//
//	direct: A 198.18.0.1/24             <-> B 198.18.0.2/24
//	nat:    A 198.18.1.2/24 gw 198.18.1.1 | NAT inside 198.18.1.1/24
//	        NAT outside 198.19.0.1/24    <-> B 198.19.0.2/24
//
// Guest 0 (A) is the one behind the NAT (the sender in the ESP test); guest 1
// (B) sees A as 198.19.0.1 with a randomised source port. The NAT forwards
// new flows from inside to outside only, and replies; like a real NAT, it
// drops flows the outside starts.
//
// The nat topology needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root) and the nft
// binary (Debian: nftables). It never touches the host's network: nothing is
// named in /var/run/netns, and the namespace disappears when its last file
// (ours, or QEMU's copy of a tap) is closed, even if kbisect is killed.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// Topology names.
const (
	TopologyDirect = "direct"
	TopologyNAT    = "nat"
)

// Guest network kinds: how the vm package hands Guest.File to QEMU.
const (
	// KindDgram is an AF_UNIX SOCK_DGRAM socket end:
	// -netdev dgram,id=n0,local.type=fd,local.str=N
	KindDgram = "dgram"
	// KindTap is an open tap fd (IFF_TAP|IFF_NO_PI, no vnet header):
	// -netdev tap,id=n0,fd=N
	KindTap = "tap"
)

// DefaultMTU is the MTU used when Options.MTU is zero.
const DefaultMTU = 1500

// maxFrame is the largest frame the relay and the captures take whole:
// QEMU's NET_BUFSIZE (64 KiB of packet plus 4 KiB of headroom).
const maxFrame = 4096 + 65536

// maxMTU is the largest MTU a tap accepts.
const maxMTU = 65535

// DefaultSnaplen is the capture length used when Options.Snaplen is zero. It
// keeps whole frames: the wire verdict needs every ESP byte.
const DefaultSnaplen = 262144

// Options configure a Lab.
type Options struct {
	// Topology is TopologyDirect or TopologyNAT.
	Topology string
	// CaptureDir receives the pcap files (created if needed). Empty: no capture.
	CaptureDir string
	// Snaplen caps the bytes kept per captured frame (0: DefaultSnaplen).
	Snaplen int
	// Fault, if not nil, damages or drops chosen frames (self-tests).
	Fault *Fault
	// MTU of the link (0: DefaultMTU). The NAT's interfaces use it; the
	// guests should configure Endpoint.MTU on their interface.
	MTU int
}

// Endpoint is one end of the wire: what a guest (its QEMU and its agent)
// needs to join it.
type Endpoint struct {
	// Kind is KindDgram or KindTap.
	Kind string
	// File is the open socket or tap to pass to QEMU (exec.Cmd.ExtraFiles;
	// it is close-on-exec, so no other child inherits it). The Lab owns it:
	// do not close it; Lab.Close does. QEMU's inherited copy stays valid
	// until QEMU exits.
	File *os.File
	// MAC is the address to give the guest's NIC (QEMU -device ...,mac=).
	MAC string
	// Addr is the guest's IPv4 address in CIDR form.
	Addr string
	// Gateway is the guest's default gateway, empty when the peer is on link.
	Gateway string
	// PeerView is the other guest's address as this guest sees it (behind
	// the NAT, guest B sees the NAT's outside address).
	PeerView string
	// MTU is the MTU the guest should set on its interface.
	MTU int
}

// Counter counts Ethernet frames and their bytes (header included, no FCS).
type Counter struct {
	Frames uint64
	Bytes  uint64
}

// Stats says what crossed the wire.
type Stats struct {
	// AtoB and BtoA count the frames guest 0 (A) and guest 1 (B) sent into
	// the wire, ARP included.
	AtoB, BtoA Counter
	// Faults is the number of frames a Fault flipped or dropped.
	Faults uint64
	// Dropped counts frames the wire discarded by itself (not by a Fault):
	// direct: larger than 68 KiB, refused by the receiving socket, or still
	// waiting for the receiver when the Lab closed; nat: tap queue overruns
	// because QEMU did not read.
	Dropped uint64
	// CaptureDrops counts frames that crossed a capture point but are not in
	// its pcap (AF_PACKET socket overrun). A failed write to the pcap makes
	// Close return an error instead.
	CaptureDrops uint64
}

// Mapping is one translation the NAT made for a flow guest A started.
type Mapping struct {
	// Proto is the IP protocol number (17 for UDP, 6 for TCP, 1 for ICMP).
	Proto uint8
	// Inside is the flow's source as A sent it.
	Inside netip.AddrPort
	// Outside is the same source as B sees it: the NAT's outside address and
	// the port it chose (for ICMP, the echo identifier).
	Outside netip.AddrPort
	// Peer is the flow's destination.
	Peer netip.AddrPort
}

// topology is what a Lab delegates to.
type topology interface {
	endpoints() [2]Endpoint
	captures() []string
	stats() (Stats, error)
	mappings() ([]Mapping, error)
	// close stops all goroutines, flushes the captures and releases every
	// file; it returns the final stats.
	close() (Stats, error)
}

// Lab is a running wire between two guests. It is safe for concurrent use.
type Lab struct {
	topo     topology
	stopCtx  func() bool
	mu       sync.Mutex
	closed   bool
	final    Stats
	closeErr error
	done     chan struct{}
}

// New builds the wire described by opts. It stays up until Close or until
// ctx is done, whichever comes first; either way everything is released.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if o.CaptureDir != "" {
		if err := os.MkdirAll(o.CaptureDir, 0o755); err != nil {
			return nil, fmt.Errorf("netlab: capture dir: %w", err)
		}
	}
	var t topology
	switch o.Topology {
	case TopologyDirect:
		t, err = newDirect(o)
	case TopologyNAT:
		t, err = newNAT(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	l := &Lab{topo: t, done: make(chan struct{})}
	l.stopCtx = context.AfterFunc(ctx, func() { l.Close() })
	return l, nil
}

func (o Options) normalize() (Options, error) {
	switch o.Topology {
	case TopologyDirect, TopologyNAT:
	case "":
		return o, errors.New("netlab: no topology: use direct or nat")
	default:
		return o, fmt.Errorf("netlab: unknown topology %q: use direct or nat", o.Topology)
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.MTU < 576 || o.MTU > maxMTU {
		return o, fmt.Errorf("netlab: MTU %d out of range: use 576..%d", o.MTU, maxMTU)
	}
	if o.Snaplen == 0 {
		o.Snaplen = DefaultSnaplen
	}
	if o.Snaplen < 64 || o.Snaplen > DefaultSnaplen {
		return o, fmt.Errorf("netlab: snaplen %d out of range: use 64..%d", o.Snaplen, DefaultSnaplen)
	}
	if o.Fault != nil {
		if err := o.Fault.validate(o.Topology); err != nil {
			return o, err
		}
	}
	if o.CaptureDir != "" {
		o.CaptureDir = filepath.Clean(o.CaptureDir)
	}
	return o, nil
}

// Endpoints returns the two ends: [0] is guest A's (behind the NAT), [1]
// guest B's.
func (l *Lab) Endpoints() [2]Endpoint { return l.topo.endpoints() }

// Captures returns the pcap paths: for direct CaptureDir/wire.pcap; for nat
// CaptureDir/nat-inside.pcap (A's side of the NAT) then nat-outside.pcap
// (B's side). Nil without CaptureDir. The files are complete once Close
// returns.
func (l *Lab) Captures() []string { return l.topo.captures() }

// Stats returns the counters so far; after Close, the final ones.
func (l *Lab) Stats() (Stats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.final, nil
	}
	return l.topo.stats()
}

// Mappings lists the NAT's translations (its conntrack table) for flows
// from guest A; after Close, as they were when it closed. Nil for direct.
func (l *Lab) Mappings() ([]Mapping, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.topo.mappings()
}

// Done is closed once the Lab is closed (by Close or by its context).
func (l *Lab) Done() <-chan struct{} { return l.done }

// Close stops the wire, completes the captures and releases every file,
// goroutine and namespace. It is idempotent; later calls return the first
// call's error.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	if l.stopCtx != nil {
		l.stopCtx()
	}
	l.final, l.closeErr = l.topo.close()
	close(l.done)
	return l.closeErr
}
