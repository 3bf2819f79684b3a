package esp

import (
	"bytes"
	"encoding/binary"

	"github.com/kbisect/kbisect/testcases/proto"
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// conn is one direction of one TCP connection inside the ESP.
type conn struct {
	sport, dport uint16
	stream       int // test stream of the data direction, -1 otherwise

	// Checksums: which pseudo-header candidate matched last, and for
	// segments matching none, their implied address sums.
	ckCand  int
	ckGood  int64
	ckBad   int64
	implied [4]uint64
	implCnt [4]int64

	haveBase, exact bool
	base            uint32
	ref             int64 // highest end offset seen, to unwrap sequence numbers
	syn, fin, rst   bool
	finOff          int64
	cover, corrupt  rangeSet
	segments        int64
	retrans         int64
	ooo             int64
	differ          int64
	unaligned       int64
	corrs           []corrRef // this connection's detailed corruptions
}

// corrRef ties a detailed corruption to its segment's implied checksum
// address sum, to settle "bad" vs "unverifiable" at the end.
type corrRef struct {
	idx     int
	implied uint64
}

// tcp handles one decrypted TCP segment.
func (a *analyzer) tcp(cs *capState, g *saGroup, espSeq uint32, outer uint64, seg []byte) {
	cr := cs.rep
	if len(seg) < 20 {
		cr.Malformed++
		return
	}
	doff := int(seg[12]>>4) * 4
	if doff < 20 || doff > len(seg) {
		cr.Malformed++
		return
	}
	cr.TCPSegments++
	sport, dport := binary.BigEndian.Uint16(seg), binary.BigEndian.Uint16(seg[2:])
	seqn, ackn := binary.BigEndian.Uint32(seg[4:]), binary.BigEndian.Uint32(seg[8:])
	flags := seg[13]
	payload := seg[doff:]

	key := uint32(sport)<<16 | uint32(dport)
	c := cs.last
	if c == nil || cs.lastKey != key {
		c = cs.conns[key]
		if c == nil {
			c = a.newConn(sport, dport)
			cs.conns[key] = c
		}
		cs.last, cs.lastKey = c, key
	}
	ckOK, implied := a.checksum(c, g, outer, seg)
	if !ckOK {
		cr.ChecksumFailures++
	}

	if c.stream < 0 {
		if s := int(sport) - a.basePort; s >= 0 && s < a.streams {
			// The receiver's side of a test connection: its SYN-ACK tells
			// the sender's ISN when the SYN was not captured.
			g.dir = dirReverse
			if len(payload) > 0 {
				cr.ReverseData += int64(len(payload))
			}
			if flags&(tcpSYN|tcpRST) != 0 { // not on every ACK
				dk := uint32(dport)<<16 | uint32(sport)
				d := cs.conns[dk]
				if flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK {
					if d == nil {
						d = a.newConn(dport, sport)
						cs.conns[dk] = d
					}
					if !d.haveBase {
						d.base, d.haveBase, d.exact = ackn, true, true
					}
				}
				if flags&tcpRST != 0 && d != nil {
					// The receiver's reset ends the connection as a
					// FIN would: a connect that came before its
					// listener (refused) or a receiver that stopped
					// on a corruption.
					d.rst = true
				}
			}
		} else {
			cr.OtherTCP++
		}
		a.traceTCP(cs, g, espSeq, seg, -1, ckOK)
		return
	}
	g.dir = dirData
	dataSeq := seqn
	if flags&tcpSYN != 0 {
		isn := seqn
		if c.haveBase && c.segments > 0 && c.base != isn+1 {
			// A new connection on the same ports.
			cs.closed = append(cs.closed, c)
			c = a.newConn(sport, dport)
			cs.conns[key] = c
			cs.last = c
		}
		c.base, c.haveBase, c.exact, c.syn = isn+1, true, true, true
		dataSeq = isn + 1
	}
	if flags&tcpRST != 0 {
		c.rst = true
	}
	if len(payload) == 0 && flags&tcpFIN == 0 {
		a.traceTCP(cs, g, espSeq, seg, -1, ckOK)
		return
	}
	if !c.haveBase && (len(payload) == 0 || !a.align(c, dataSeq, payload)) {
		c.unaligned += int64(len(payload))
		a.traceTCP(cs, g, espSeq, seg, -1, ckOK)
		return
	}
	d := int64(int32(dataSeq - c.base - uint32(c.ref)))
	off := c.ref + d
	if off < 0 || d > 1<<30 {
		cr.OutOfWindow++
		a.traceTCP(cs, g, espSeq, seg, -1, ckOK)
		return
	}
	end := off + int64(len(payload))
	if flags&tcpFIN != 0 {
		c.fin, c.finOff = true, end
	}
	if len(payload) > 0 {
		c.segments++
		cr.PayloadBytes += int64(len(payload))
		a.checkData(cs, c, g, espSeq, off, payload, ckOK, implied)
		c.ref = max(c.ref, end)
	}
	a.traceTCP(cs, g, espSeq, seg, off, ckOK)
}

func (a *analyzer) newConn(sport, dport uint16) *conn {
	c := &conn{sport: sport, dport: dport, stream: -1, ckCand: -1}
	if s := int(dport) - a.basePort; s >= 0 && s < a.streams {
		c.stream = s
	}
	return c
}

func (a *analyzer) traceTCP(cs *capState, g *saGroup, espSeq uint32, seg []byte, off int64, ckOK bool) {
	if a.opts.Trace == nil {
		return
	}
	doff := int(seg[12]>>4) * 4
	a.info = PacketInfo{
		NextHeader: 6, TCP: true,
		SrcPort: binary.BigEndian.Uint16(seg), DstPort: binary.BigEndian.Uint16(seg[2:]),
		Seq: binary.BigEndian.Uint32(seg[4:]), Ack: binary.BigEndian.Uint32(seg[8:]),
		Flags: seg[13], ChecksumOK: ckOK, Stream: -1, Offset: off, Payload: seg[doff:],
	}
	if s := int(a.info.DstPort) - a.basePort; s >= 0 && s < a.streams {
		a.info.Stream = s
	}
	a.trace(cs, g, espSeq, "ok", &a.info)
}

// checksum verifies a TCP segment's checksum. In NAT-T transport mode the
// sender computed it over its own view of the addresses, which a NAT
// rewrites, so the candidates are the packet's addresses and every view of
// the SA in the keys. It also returns the address sum the checksum implies,
// to recognise connections whose pseudo-header is simply unknown.
func (a *analyzer) checksum(c *conn, g *saGroup, outer uint64, seg []byte) (bool, uint64) {
	base := onesSum(seg) + 6 + uint64(len(seg))
	try := func(i int) bool {
		p := outer
		if i > 0 {
			p = g.pairs[i-1]
		}
		return fold64(base+p) == 0xffff
	}
	if c.ckCand >= 0 && c.ckCand <= len(g.pairs) && try(c.ckCand) {
		c.ckGood++
		return true, 0
	}
	for i := 0; i <= len(g.pairs); i++ {
		if try(i) {
			c.ckCand = i
			c.ckGood++
			return true, 0
		}
	}
	c.ckBad++
	implied := 0xffff - fold64(base)
	for i := range c.implied {
		if c.implCnt[i] == 0 {
			c.implied[i] = implied
		}
		if c.implied[i] == implied {
			c.implCnt[i]++
			break
		}
	}
	return false, implied
}

// align infers the stream offset of a segment when the SYN was not
// captured: any offset for a constant pattern, else the position of the
// payload in the pattern's period (checked on the whole segment, so a
// corrupted segment cannot misalign the stream). Offsets are then exact
// modulo proto.PatternBlock only.
func (a *analyzer) align(c *conn, seq uint32, payload []byte) bool {
	if a.constant {
		c.base, c.haveBase = seq, true
		return true
	}
	if len(payload) < 16 {
		return false
	}
	idx := a.patIndex[c.stream]
	pat := a.pattern(c.stream)
	if idx == nil {
		idx = make(map[uint64]int32, proto.PatternBlock/8)
		for i := 0; i < proto.PatternBlock; i += 8 {
			idx[binary.LittleEndian.Uint64(pat[i:])] = int32(i)
		}
		a.patIndex[c.stream] = idx
	}
	for j := 0; j < 8; j++ {
		p, ok := idx[binary.LittleEndian.Uint64(payload[j:])]
		if !ok {
			continue
		}
		phase := (int(p) - j + proto.PatternBlock) % proto.PatternBlock
		if a.matches(pat, int64(phase), payload) {
			c.base, c.haveBase = seq-uint32(phase), true
			return true
		}
	}
	return false
}

func (a *analyzer) matches(pat []byte, off int64, b []byte) bool {
	for len(b) > 0 {
		p := int(off % proto.PatternBlock)
		n := min(len(b), proto.PatternBlock)
		if !bytes.Equal(b[:n], pat[p:p+n]) {
			return false
		}
		b, off = b[n:], off+int64(n)
	}
	return true
}

// mismatchRuns appends to dst the runs of b (at stream offset off) that
// differ from the pattern. Wrong bytes less than 8 apart form one run, so a
// garbled cipher block is one corruption.
func mismatchRuns(dst []Range, pat []byte, off int64, b []byte) []Range {
	for len(b) > 0 {
		p := int(off % proto.PatternBlock)
		n := min(len(b), proto.PatternBlock)
		got, want := b[:n], pat[p:p+n]
		if !bytes.Equal(got, want) {
			for i := 0; i < n; i++ {
				if got[i] == want[i] {
					continue
				}
				last := i
				for j := i + 1; j < n && j-last <= 8; j++ {
					if got[j] != want[j] {
						last = j
					}
				}
				r := Range{off + int64(i), int64(last - i + 1)}
				if k := len(dst) - 1; k >= 0 && dst[k].End() == r.Off {
					dst[k].Len += r.Len // continues across the chunk border
				} else {
					dst = append(dst, r)
				}
				i = last
			}
		}
		b, off = b[n:], off+int64(n)
	}
	return dst
}

// checkData compares one copy of stream bytes with the pattern, records
// corruptions and coverage, and flags retransmitted copies that differ from
// earlier ones.
func (a *analyzer) checkData(cs *capState, c *conn, g *saGroup, espSeq uint32, off int64, payload []byte, ckOK bool, implied uint64) {
	cr := cs.rep
	end := off + int64(len(payload))
	pat := a.pattern(c.stream)
	a.runs = mismatchRuns(a.runs[:0], pat, off, payload)
	var overlap int64
	if off < c.cover.end() {
		overlap = c.cover.covered(off, end)
		if overlap > 0 {
			c.retrans += overlap
			if a.copiesDiffer(c, off, end) {
				c.differ++
			}
		} else {
			c.ooo++
		}
	}
	for _, r := range a.runs {
		if c.corrupt.covered(r.Off, r.End()) == r.Len {
			continue // the same corruption again (an identical retransmission)
		}
		retrans := c.cover.covered(r.Off, r.End()) > 0
		c.corrupt.add(r.Off, r.End())
		cr.Corruptions++
		if len(a.rep.Corruptions) >= a.maxCorr {
			a.rep.CorruptionsDropped++
			continue
		}
		i := r.Off - off
		n := min(r.Len, 64)
		p := r.Off % proto.PatternBlock
		exp := append([]byte(nil), pat[p:p+n]...)
		ck := "ok"
		if !ckOK {
			ck = "bad"
			c.corrs = append(c.corrs, corrRef{len(a.rep.Corruptions), implied})
		}
		wc := WireCorruption{
			Corruption: proto.Corruption{
				Stream: c.stream, Offset: r.Off, Length: int(r.Len),
				Expected: exp, Seen: append([]byte(nil), payload[i:i+n]...), Side: "wire",
			},
			Capture: cs.idx, Frame: cs.frame, SPI: g.spi, ESPSeq: espSeq,
			TCPChecksum: ck, Retransmission: retrans, OffsetExact: c.exact,
		}
		wc.CipherBlock, wc.CipherBlockText = a.cipherBlock(payload, i)
		a.rep.Corruptions = append(a.rep.Corruptions, wc)
	}
	c.cover.add(off, end)
}

// cipherBlock returns the CBC ciphertext block that decrypted to byte i of
// payload (part of the packet being checked), and the block as text when it
// reads as text: wrong bytes that decrypt from a block of the sender's own
// memory (text of its application, say) show that the encrypting code's
// register was loaded from elsewhere.
func (a *analyzer) cipherBlock(payload []byte, i int64) (proto.HexBytes, string) {
	if a.cbc.ct == nil || cap(payload) > cap(a.cbc.plain) {
		return nil, ""
	}
	pos := int64(cap(a.cbc.plain)-cap(payload)) + i // in the plaintext
	b := pos / 16 * 16
	if b+16 > int64(len(a.cbc.ct)) {
		return nil, ""
	}
	block := append(proto.HexBytes(nil), a.cbc.ct[b:b+16]...)
	printable := 0
	for _, c := range block {
		if c >= 0x20 && c < 0x7f {
			printable++
		}
	}
	if printable >= 14 {
		return block, string(block)
	}
	return block, ""
}

// copiesDiffer says whether the wrong-byte runs of the new copy of [off,
// end) differ from those of the earlier copies where they overlap.
func (a *analyzer) copiesDiffer(c *conn, off, end int64) bool {
	if len(a.runs) == 0 && c.corrupt.covered(off, end) == 0 {
		return false
	}
	a.clipA = c.cover.clip(a.clipA[:0], off, end)
	for _, p := range a.clipA {
		a.clipB = c.corrupt.clip(a.clipB[:0], p.Off, p.End())
		var fresh []Range
		for _, r := range a.runs {
			lo, hi := max(r.Off, p.Off), min(r.End(), p.End())
			if lo < hi {
				fresh = append(fresh, Range{lo, hi - lo})
			}
		}
		if len(fresh) != len(a.clipB) {
			return true
		}
		for i := range fresh {
			if fresh[i] != a.clipB[i] {
				return true
			}
		}
	}
	return false
}
