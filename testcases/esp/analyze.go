package esp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
)

// DefaultMaxCorruptions bounds the corruptions a Report lists in detail.
const DefaultMaxCorruptions = 256

// A stream of at least minPatternCheck verified bytes of which more than
// 1/foreignFraction differ from the pattern is not the keys' stream at all
// (wrong seed or pattern kind), not a corrupted one: the verdict is unknown.
const (
	minPatternCheck = 64
	foreignFraction = 10
)

// AnalyzeOptions says what to analyze.
type AnalyzeOptions struct {
	// Pcaps are one capture (a direct link, or any single capture point),
	// or two: the sender's side of the NAT first, the receiver's second.
	Pcaps []string
	// Keys are the run's SAs, suite and pattern.
	Keys *Keys
	// MaxCorruptions bounds Report.Corruptions; 0 means
	// DefaultMaxCorruptions.
	MaxCorruptions int
	// ReceiverInside says the capture ran until after the receiver had read
	// every byte it reports on, and dropped nothing: whatever copy of a
	// stream's bytes the receiver consumed crossed the capture point and is
	// in the capture. A run stopped at its first corruption then needs no
	// FIN to tell decapsulation from encapsulation (see Explain).
	ReceiverInside bool
	// Trace, when set, is called for every ESP packet of a known SA, for
	// tests and debugging. The PacketInfo and its Payload are only valid
	// during the call.
	Trace func(*PacketInfo)
}

// PacketInfo describes one ESP packet of a known SA (see
// AnalyzeOptions.Trace).
type PacketInfo struct {
	Capture int
	Frame   int64
	SPI     uint32
	ESPSeq  uint32
	// Status is "ok", "icv" (authentication failed), "short", "bad-length",
	// "bad-trailer" or "duplicate".
	Status     string
	NextHeader int
	// TCP is set when the packet decrypted to a TCP segment; the fields
	// below describe it.
	TCP        bool
	SrcPort    uint16
	DstPort    uint16
	Seq, Ack   uint32
	Flags      uint8
	ChecksumOK bool
	// Stream is the test stream of a segment the sender sent to a test
	// port, -1 otherwise; Offset the stream offset of Payload[0] in a data
	// segment, -1 when unknown or not data.
	Stream  int
	Offset  int64
	Payload []byte
}

const (
	dirUnknown = iota
	dirData    // sender -> receiver
	dirReverse // receiver -> sender
)

var dirNames = [...]string{"", "sender to receiver", "receiver to sender"}

// Analyze decrypts the ESP-in-UDP traffic of the captures with the keys,
// checks every test stream's bytes against the pattern and says whether the
// wire carried corrupted payload. Unreadable or non-capture files and
// unusable keys are errors; an incomplete capture gives WireUnknown with
// Report.Missing saying what is missing.
func Analyze(ctx context.Context, opts AnalyzeOptions) (*Report, error) {
	if len(opts.Pcaps) == 0 || len(opts.Pcaps) > 2 {
		return nil, fmt.Errorf("wire analysis needs one or two captures, got %d", len(opts.Pcaps))
	}
	if opts.Keys == nil {
		return nil, errors.New("wire analysis needs the run's keys")
	}
	if err := opts.Keys.Validate(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	a, err := newAnalyzer(opts)
	if err != nil {
		return nil, err
	}
	srcs := make([]*pcapSource, len(opts.Pcaps))
	defer func() {
		for _, s := range srcs {
			if s != nil {
				s.close()
			}
		}
	}()
	// Open all first, so a bad second file fails before minutes of work.
	for i, p := range opts.Pcaps {
		if srcs[i], err = openCapture(p); err != nil {
			return nil, err
		}
	}
	for i, src := range srcs {
		side := SideDirect
		if len(srcs) == 2 {
			side = [2]string{SideSender, SideReceiver}[i]
		}
		if err := a.readCapture(ctx, i, opts.Pcaps[i], side, src); err != nil {
			return nil, err
		}
	}
	a.finish()
	return a.rep, nil
}

// saGroup is one SPI with its crypto and the pseudo-header addresses of
// every view of it in the keys.
type saGroup struct {
	idx    int
	spi    uint32
	crypto *saCrypto
	pairs  []uint64
	dir    int
}

// seqTrack records which sequence numbers of one SA a capture saw.
type seqTrack struct {
	seen, valid bitset
	fp          []uint64 // fingerprint (last 8 bytes of the ICV) by seq
	frame       []uint32 // frame number by seq
	packets     int64
	icvFail     int64
	first, last uint32 // authenticated sequence numbers
	haveValid   bool
	tooFar      int64
}

// Sequence numbers above this are not tracked (a capture of 64 M packets of
// one SA); fingerprints for the two-capture comparison stop earlier.
const (
	maxTrackedSeq = 1 << 26
	maxFPSeq      = 1 << 24
)

type bitset []uint64

func (b *bitset) set(i uint32) {
	w := int(i >> 6)
	if w >= len(*b) {
		n := max(2*len(*b), w+1, 64)
		nb := make(bitset, n)
		copy(nb, *b)
		*b = nb
	}
	(*b)[w] |= 1 << (i & 63)
}

func (b bitset) has(i uint32) bool {
	w := int(i >> 6)
	return w < len(b) && b[w]&(1<<(i&63)) != 0
}

// countRange counts the set (want=true) or clear bits in [lo, hi].
func (b bitset) countRange(lo, hi uint32, want bool) int64 {
	var n int64
	for i := lo; i <= hi; {
		w := int(i >> 6)
		var word uint64
		if w < len(b) {
			word = b[w]
		}
		if !want {
			word = ^word
		}
		// Mask to [i, min(hi, end of word)].
		startBit := i & 63
		endBit := uint32(63)
		if hi>>6 == i>>6 {
			endBit = hi & 63
		}
		mask := (^uint64(0) << startBit) & (^uint64(0) >> (63 - endBit))
		n += int64(bits.OnesCount64(word & mask))
		next := (i | 63) + 1
		if next <= i { // overflow
			break
		}
		i = next
	}
	return n
}

type capState struct {
	idx    int
	path   string
	src    *pcapSource
	rep    *CaptureReport
	conns  map[uint32]*conn
	closed []*conn
	tracks []seqTrack
	frame  int64
	ts     time.Time // of the current packet
	// firstESP and lastESP are the times of the first and last ESP packet
	// of the keys' SAs; sizes[n] is set when one had n bytes of ESP.
	firstESP, lastESP time.Time
	sizes             []bool
	sizeCount         []int64 // per sizeBuckets
	lastKey           uint32
	last              *conn
}

type analyzer struct {
	k        *Keys
	opts     AnalyzeOptions
	twoCaps  bool
	groups   []*saGroup
	bySPI    map[uint32]*saGroup
	basePort int
	streams  int
	patterns [][]byte           // per stream: 2*proto.PatternBlock bytes
	patIndex []map[uint64]int32 // per stream, built on demand (no SYN)
	constant bool               // the pattern does not depend on the offset
	maxCorr  int
	rep      *Report
	caps     []*capState
	scratch  []byte
	runs     []Range
	clipA    []Range
	clipB    []Range
	info     PacketInfo
	// cbc is the packet being checked when its SA is CBC: the plaintext
	// its TCP segment was decrypted into, its ciphertext and IV (for
	// WireCorruption.CipherBlock).
	cbc struct{ plain, ct, iv []byte }
}

func newAnalyzer(opts AnalyzeOptions) (*analyzer, error) {
	k := opts.Keys
	a := &analyzer{
		k:        k,
		opts:     opts,
		twoCaps:  len(opts.Pcaps) == 2,
		bySPI:    map[uint32]*saGroup{},
		basePort: k.basePort(),
		streams:  k.Streams,
		patterns: make([][]byte, k.Streams),
		patIndex: make([]map[uint64]int32, k.Streams),
		constant: k.Pattern != "prng",
		maxCorr:  opts.MaxCorruptions,
		rep:      &Report{ReceiverInside: opts.ReceiverInside},
		scratch:  make([]byte, 1<<17),
	}
	if a.maxCorr <= 0 {
		a.maxCorr = DefaultMaxCorruptions
	}
	for _, sa := range k.SAs {
		g := a.bySPI[sa.SPI]
		if g == nil {
			c, err := newSACrypto(k, sa)
			if err != nil {
				return nil, fmt.Errorf("keys: %w", err)
			}
			g = &saGroup{idx: len(a.groups), spi: sa.SPI, crypto: c}
			a.groups = append(a.groups, g)
			a.bySPI[sa.SPI] = g
		}
		src, err1 := netip.ParseAddr(sa.Src)
		dst, err2 := netip.ParseAddr(sa.Dst)
		if err1 == nil && err2 == nil {
			g.pairs = append(g.pairs, addrSum(src.As4(), dst.As4()))
		}
	}
	return a, nil
}

// pattern returns stream s's pattern over two periods, so that any run of
// up to proto.PatternBlock bytes is one contiguous slice.
func (a *analyzer) pattern(s int) []byte {
	if a.patterns[s] == nil {
		b := make([]byte, 2*proto.PatternBlock)
		proto.NewPattern(a.k.Pattern, a.k.Seed, s).Fill(b, 0)
		a.patterns[s] = b
	}
	return a.patterns[s]
}

func (a *analyzer) readCapture(ctx context.Context, idx int, path, side string, src *pcapSource) error {
	cr := &CaptureReport{Path: path, Side: side, LinkType: linkTypeNames[src.linkType], FileBytes: src.size}
	cs := &capState{idx: idx, path: path, src: src, rep: cr, conns: map[uint32]*conn{}, tracks: make([]seqTrack, len(a.groups))}
	a.caps = append(a.caps, cs)
	for {
		if cs.frame&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("analysis of %s: %w", path, err)
			}
		}
		data, ci, err := src.next()
		if err != nil {
			if err == io.EOF {
				break
			}
			cr.Truncated = true
			if errors.Is(err, io.ErrUnexpectedEOF) {
				cr.TruncatedReason = fmt.Sprintf("file ends inside packet %d (capture killed before it flushed?)", cs.frame+1)
			} else {
				cr.TruncatedReason = fmt.Sprintf("damaged after packet %d: %v", cs.frame, err)
			}
			break
		}
		cs.frame++
		cr.Packets++
		cs.ts = ci.Timestamp
		a.packet(cs, data, ci.CaptureLength < ci.Length)
	}
	cr.Dropped = src.droppedTotal()
	return nil
}

// packet decodes one link-layer frame. Decoding is by hand rather than with
// gopacket's DecodingLayerParser: the layers needed are four fixed headers,
// and the analysis must run at several hundred MB/s.
func (a *analyzer) packet(cs *capState, data []byte, snapped bool) {
	cr := cs.rep
	ip, v6 := ipv4Of(cs.src.linkType, data)
	if ip == nil {
		if v6 {
			cr.IPv6++
		} else {
			cr.NotIP++
		}
		return
	}
	if len(ip) < 20 || ip[0]>>4 != 4 {
		cr.Malformed++
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || tot < ihl {
		cr.Malformed++
		return
	}
	if tot > len(ip) {
		if snapped {
			cr.Snapped++
		} else {
			cr.Malformed++
		}
		return
	}
	ip = ip[:tot]
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		cr.Fragments++
		return
	}
	var esp []byte
	switch ip[9] {
	case 17:
		udp := ip[ihl:]
		if len(udp) < 8 {
			cr.Malformed++
			return
		}
		sport, dport := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[2:])
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		if ulen < 8 || ulen > len(udp) {
			cr.Malformed++
			return
		}
		p := udp[8:ulen]
		if sport != 4500 && dport != 4500 && !a.espPort(sport, dport) {
			cr.OtherIP++
			return
		}
		switch {
		case len(p) == 1 && p[0] == 0xff:
			cr.Keepalives++
			return
		case len(p) >= 4 && p[0]|p[1]|p[2]|p[3] == 0:
			cr.NonESP++
			return
		case len(p) < espHeaderLen:
			cr.Malformed++
			return
		}
		esp = p
	case 50:
		esp = ip[ihl:]
		if len(esp) < espHeaderLen {
			cr.Malformed++
			return
		}
	default:
		cr.OtherIP++
		return
	}
	spi := binary.BigEndian.Uint32(esp)
	g := a.bySPI[spi]
	if g == nil {
		cr.UnknownSPI++
		return
	}
	cr.ESPPackets++
	cs.espSeen(len(esp))
	seq := binary.BigEndian.Uint32(esp[4:])
	tr := &cs.tracks[g.idx]
	tr.packets++
	fp := binary.LittleEndian.Uint64(esp[len(esp)-8:])
	if tr.seen.has(seq) && a.dupOf(tr, seq, fp) {
		cr.Duplicates++
		a.trace(cs, g, seq, "duplicate", nil)
		return
	}
	inner, next, padOK, res := g.crypto.open(esp, a.scratch)
	valid := res == openOK || res == openBadLength || res == openBadTrailer
	a.record(tr, seq, valid, fp, cs.frame)
	switch res {
	case openICV, openShort:
		cr.ICVFailures++
		tr.icvFail++
		a.trace(cs, g, seq, statusNames[res], nil)
		return
	case openBadLength, openBadTrailer:
		cr.BadESP++
		a.trace(cs, g, seq, statusNames[res], nil)
		return
	}
	if !padOK {
		cr.BadPadding++
	}
	if next != 6 {
		cr.NotTCP++
		a.info = PacketInfo{NextHeader: int(next)}
		a.trace(cs, g, seq, "ok", &a.info)
		return
	}
	var src, dst [4]byte
	copy(src[:], ip[12:16])
	copy(dst[:], ip[16:20])
	a.cbc.plain, a.cbc.ct, a.cbc.iv = nil, nil, nil
	if g.crypto.kind == kindCBC {
		iv := esp[espHeaderLen : espHeaderLen+g.crypto.ivLen]
		a.cbc.plain, a.cbc.ct, a.cbc.iv = inner, esp[espHeaderLen+g.crypto.ivLen:len(esp)-g.crypto.icvLen], iv
	}
	a.tcp(cs, g, seq, addrSum(src, dst), inner)
}

var statusNames = [...]string{
	openOK: "ok", openShort: "short", openICV: "icv", openBadLength: "bad-length", openBadTrailer: "bad-trailer",
}

// espPort says whether a UDP port pair is one the keys name for NAT-T.
func (a *analyzer) espPort(sport, dport uint16) bool {
	for _, sa := range a.k.SAs {
		if sa.SrcPort != 0 && (sa.SrcPort == sport || sa.SrcPort == dport) ||
			sa.DstPort != 0 && (sa.DstPort == sport || sa.DstPort == dport) {
			return true
		}
	}
	return false
}

// dupOf says whether a packet with seq and fingerprint fp repeats one this
// capture already holds (a capture artefact: the same packet twice).
func (a *analyzer) dupOf(tr *seqTrack, seq uint32, fp uint64) bool {
	if int(seq) < len(tr.fp) {
		return tr.fp[seq] == fp
	}
	return true
}

func (a *analyzer) record(tr *seqTrack, seq uint32, valid bool, fp uint64, frame int64) {
	if seq == 0 || seq >= maxTrackedSeq {
		tr.tooFar++
		return
	}
	if !valid {
		// An unauthenticated sequence number may be garbage: only track
		// it near the authenticated ones.
		lim := uint32(1 << 20)
		if tr.haveValid {
			lim = tr.last + 1<<16
		}
		if seq > lim {
			tr.tooFar++
			return
		}
	} else {
		if !tr.haveValid || seq < tr.first {
			tr.first = seq
		}
		if !tr.haveValid || seq > tr.last {
			tr.last = seq
		}
		tr.haveValid = true
	}
	if tr.seen.has(seq) {
		// A different packet with the same number: keep the
		// authenticated one.
		if !valid || tr.valid.has(seq) {
			return
		}
	}
	tr.seen.set(seq)
	if valid {
		tr.valid.set(seq)
	}
	if seq < maxFPSeq {
		if int(seq) >= len(tr.fp) {
			n := max(2*len(tr.fp), int(seq)+1, 1024)
			fps := make([]uint64, n)
			copy(fps, tr.fp)
			tr.fp = fps
			if a.twoCaps {
				frames := make([]uint32, n)
				copy(frames, tr.frame)
				tr.frame = frames
			}
		}
		tr.fp[seq] = fp
		if a.twoCaps {
			tr.frame[seq] = uint32(frame)
		}
	}
}

func (a *analyzer) trace(cs *capState, g *saGroup, seq uint32, status string, pi *PacketInfo) {
	if a.opts.Trace == nil {
		return
	}
	if pi == nil {
		a.info = PacketInfo{}
		pi = &a.info
	}
	pi.Capture, pi.Frame, pi.SPI, pi.ESPSeq, pi.Status = cs.idx, cs.frame, g.spi, seq, status
	if !pi.TCP {
		pi.Stream, pi.Offset = -1, -1
	}
	a.opts.Trace(pi)
}
