package netlab

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
)

// Direction names a way across the wire.
type Direction int

const (
	// AtoB is the frames guest 0 (A, behind the NAT) sends toward guest 1 (B).
	AtoB Direction = iota
	// BtoA is the frames guest 1 (B) sends toward guest 0 (A).
	BtoA
	// Both is either way; one frame counter serves both.
	Both
)

// String names the direction as the CLI would: a-to-b, b-to-a, both.
func (d Direction) String() string {
	switch d {
	case AtoB:
		return "a-to-b"
	case BtoA:
		return "b-to-a"
	case Both:
		return "both"
	}
	return fmt.Sprintf("direction(%d)", int(d))
}

// FaultAction is what a Fault does to a frame it hits.
type FaultAction int

const (
	// FlipFrameByte XORs Mask into the byte at Offset of the Ethernet frame.
	// Checksums are left alone. On nat, Offset must be at least 14 (the
	// frame's Ethernet header is rebuilt by the NAT).
	FlipFrameByte FaultAction = iota
	// FlipUDPPayloadByte XORs Mask into the byte at Offset of the UDP
	// payload of an IPv4 frame and keeps the UDP checksum valid, so the
	// damage reaches the receiver's application (or its ESP ICV check):
	// direct updates a non-zero checksum, nat sets it to 0 (no checksum,
	// valid in IPv4; nftables cannot update it for a raw payload write).
	// ESP-in-UDP is sent with checksum 0 anyway.
	FlipUDPPayloadByte
	// Drop discards the frame.
	Drop
)

// String names the action: flip-frame-byte, flip-udp-payload-byte, drop.
func (a FaultAction) String() string {
	switch a {
	case FlipFrameByte:
		return "flip-frame-byte"
	case FlipUDPPayloadByte:
		return "flip-udp-payload-byte"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Fault damages chosen frames on the wire, for self-tests. Frames are
// eligible when they go the right Direction, match UDPPort if set, and are
// long enough for the Action; eligible frames are counted from 1, and the
// fault hits frames Every, 2*Every, ... or, when Every is 0, frame number
// Frame only.
//
// In direct every frame can be eligible (ARP too, unless UDPPort is set),
// and the pcap shows frames as delivered (after the fault; a dropped frame
// is not in it). In nat the fault acts inside the NAT (an nftables rule on
// the forward hook, with a counter for Stats.Faults), so only forwarded
// IPv4 packets are eligible, and the capture on the sender's side of the
// NAT shows the frame as sent, the other as delivered.
type Fault struct {
	// Direction is the way the damaged frames go (zero value: AtoB).
	Direction Direction
	// Action is what happens to them (zero value: FlipFrameByte).
	Action FaultAction
	// Offset is the byte to flip, in the frame or in the UDP payload.
	Offset int
	// Mask is XORed into the byte; 0 means 0xff.
	Mask byte
	// Every hits every Every-th eligible frame.
	Every int
	// Frame hits only that eligible frame (1 is the first), when Every is 0.
	Frame int
	// UDPPort, if not 0, makes only IPv4 UDP frames from or to that port
	// eligible (4500 for NAT-T ESP).
	UDPPort int
}

func (f *Fault) validate(topology string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("netlab: fault: "+format, a...)
	}
	switch f.Direction {
	case AtoB, BtoA, Both:
	default:
		return bad("unknown direction %d: use AtoB, BtoA or Both", f.Direction)
	}
	switch f.Action {
	case FlipFrameByte, FlipUDPPayloadByte, Drop:
	default:
		return bad("unknown action %d: use FlipFrameByte, FlipUDPPayloadByte or Drop", f.Action)
	}
	if f.Offset < 0 || f.Offset >= maxFrame {
		return bad("offset %d out of range 0..%d", f.Offset, maxFrame-1)
	}
	if topology == TopologyNAT && f.Action == FlipFrameByte && f.Offset < ethHeaderLen {
		return bad("offset %d is in the Ethernet header, which the NAT rebuilds: use an offset >= %d", f.Offset, ethHeaderLen)
	}
	switch {
	case f.Every < 0 || f.Frame < 0:
		return bad("Every and Frame must not be negative")
	case f.Every > 0 && f.Frame > 0:
		return bad("set Every or Frame, not both")
	case f.Every == 0 && f.Frame == 0:
		return bad("set Every (every N-th frame) or Frame (one frame, 1-based)")
	case f.Frame > 1<<31-2:
		return bad("frame %d too large", f.Frame)
	}
	if f.UDPPort < 0 || f.UDPPort > 65535 {
		return bad("UDP port %d out of range", f.UDPPort)
	}
	return nil
}

func (f *Fault) mask() byte {
	if f.Mask == 0 {
		return 0xff
	}
	return f.Mask
}

// Ethernet and IPv4 layout used by the frame parser.
const (
	ethHeaderLen = 14
	etherTypeIP4 = 0x0800
	protoUDP     = 17
)

// udpInfo locates the UDP header of an IPv4 frame (first fragment only).
// ok is false for any other frame.
func udpInfo(frame []byte) (udpOff int, sport, dport uint16, ok bool) {
	if len(frame) < ethHeaderLen+20 || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIP4 {
		return 0, 0, 0, false
	}
	ip := frame[ethHeaderLen:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != protoUDP || binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
		return 0, 0, 0, false
	}
	udpOff = ethHeaderLen + ihl
	if len(frame) < udpOff+8 {
		return 0, 0, 0, false
	}
	return udpOff, binary.BigEndian.Uint16(frame[udpOff:]), binary.BigEndian.Uint16(frame[udpOff+2:]), true
}

// faultState applies a Fault in the direct relay. Both relay goroutines
// share it.
type faultState struct {
	f     Fault
	mask  byte
	count atomic.Uint64 // eligible frames seen
	hits  atomic.Uint64
}

func newFaultState(f *Fault) *faultState {
	if f == nil {
		return nil
	}
	return &faultState{f: *f, mask: f.mask()}
}

// apply runs the fault on one frame going dir; it reports whether the frame
// must be dropped.
func (s *faultState) apply(dir Direction, frame []byte) (drop bool) {
	f := &s.f
	if f.Direction != Both && f.Direction != dir {
		return false
	}
	udpOff, sport, dport, isUDP := udpInfo(frame)
	if f.UDPPort != 0 && (!isUDP || (int(sport) != f.UDPPort && int(dport) != f.UDPPort)) {
		return false
	}
	var at int
	switch f.Action {
	case FlipFrameByte:
		if f.Offset >= len(frame) {
			return false
		}
		at = f.Offset
	case FlipUDPPayloadByte:
		if !isUDP {
			return false
		}
		payloadEnd := udpOff + int(binary.BigEndian.Uint16(frame[udpOff+4:]))
		if payloadEnd > len(frame) {
			payloadEnd = len(frame)
		}
		at = udpOff + 8 + f.Offset
		if at >= payloadEnd {
			return false
		}
	}
	n := s.count.Add(1)
	if f.Every > 0 {
		if n%uint64(f.Every) != 0 {
			return false
		}
	} else if n != uint64(f.Frame) {
		return false
	}
	s.hits.Add(1)
	switch f.Action {
	case Drop:
		return true
	case FlipFrameByte:
		frame[at] ^= s.mask
	case FlipUDPPayloadByte:
		flipUDPByte(frame, udpOff, at, s.mask)
	}
	return false
}

// flipUDPByte XORs mask into frame[at], inside the UDP datagram at udpOff,
// and updates a non-zero UDP checksum incrementally (RFC 1624, eqn. 3).
func flipUDPByte(frame []byte, udpOff, at int, mask byte) {
	// The checksum sums 16-bit words aligned on the UDP header's start.
	word := udpOff + (at-udpOff)&^1
	var old uint16
	if word+1 < len(frame) {
		old = binary.BigEndian.Uint16(frame[word:])
	} else {
		old = uint16(frame[word]) << 8
	}
	frame[at] ^= mask
	var neu uint16
	if word+1 < len(frame) {
		neu = binary.BigEndian.Uint16(frame[word:])
	} else {
		neu = uint16(frame[word]) << 8
	}
	ck := binary.BigEndian.Uint16(frame[udpOff+6:])
	if ck == 0 {
		return // no checksum (the ESP-in-UDP norm)
	}
	sum := uint32(^ck) + uint32(^old) + uint32(neu)
	sum = (sum & 0xffff) + sum>>16
	sum = (sum & 0xffff) + sum>>16
	ck = ^uint16(sum)
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(frame[udpOff+6:], ck)
}

// nftRules renders the fault as one nftables rule for the NAT's fault
// chain (family ip, forward hook, before the NAT's own rules). Its counter
// is the number of hits.
func (f *Fault) nftRule(inside, outside string) string {
	var b strings.Builder
	switch f.Direction {
	case AtoB:
		fmt.Fprintf(&b, "iifname %q oifname %q ", inside, outside)
	case BtoA:
		fmt.Fprintf(&b, "iifname %q oifname %q ", outside, inside)
	}
	if f.UDPPort != 0 || f.Action == FlipUDPPayloadByte {
		b.WriteString("ip frag-off & 0x1fff == 0 meta l4proto udp ")
	}
	if f.UDPPort != 0 {
		fmt.Fprintf(&b, "udp sport . udp dport { %d . 0-65535, 0-65535 . %d } ", f.UDPPort, f.UDPPort)
	}
	// Eligible only when the byte exists; meta length is the IP packet's.
	switch f.Action {
	case FlipFrameByte:
		fmt.Fprintf(&b, "meta length > %d ", f.Offset-ethHeaderLen)
	case FlipUDPPayloadByte:
		fmt.Fprintf(&b, "udp length > %d ", 8+f.Offset)
	}
	// numgen inc counts only the packets that reach it: the eligible ones.
	if f.Every > 0 {
		fmt.Fprintf(&b, "numgen inc mod %d %d ", f.Every, f.Every-1)
	} else {
		fmt.Fprintf(&b, "numgen inc mod %d %d ", 1<<31-1, f.Frame-1)
	}
	b.WriteString("counter ")
	mask := f.mask()
	switch f.Action {
	case Drop:
		b.WriteString("drop")
	case FlipFrameByte:
		bit := 8 * (f.Offset - ethHeaderLen)
		fmt.Fprintf(&b, "@nh,%d,8 set @nh,%d,8 ^ 0x%02x", bit, bit, mask)
	case FlipUDPPayloadByte:
		bit := 8 * (8 + f.Offset)
		fmt.Fprintf(&b, "@th,%d,8 set @th,%d,8 ^ 0x%02x udp checksum set 0", bit, bit, mask)
	}
	return b.String()
}
