package esp

import (
	"bytes"
	"fmt"
	"math/bits"
	"path/filepath"
	"sort"
)

// finish merges the captures and decides the verdict.
func (a *analyzer) finish() {
	r := a.rep
	// Per-capture reports.
	for _, cs := range a.caps {
		cr := cs.rep
		for _, g := range a.groups {
			tr := &cs.tracks[g.idx]
			sr := SAReport{SPI: g.spi, Direction: dirNames[g.dir], Packets: tr.packets, ICVFailures: tr.icvFail}
			if tr.haveValid {
				sr.FirstSeq, sr.LastSeq = tr.first, tr.last
				sr.Missing = tr.seen.countRange(tr.first, tr.last, false)
			}
			cr.SAs = append(cr.SAs, sr)
		}
		for _, c := range a.allConns(cs) {
			a.settleChecksums(cr, c)
			if c.stream < 0 || (!c.syn && c.segments == 0 && c.unaligned == 0 && !c.fin) {
				continue
			}
			sr := streamReport(c)
			cr.Streams = append(cr.Streams, sr)
			cr.BytesVerified += sr.Verified
		}
		sortStreams(cr.Streams)
		cs.finishRates()
		r.Packets += cr.Packets
		r.ESPPackets += cr.ESPPackets
		r.ICVFailures += cr.ICVFailures
		r.ChecksumFailures += cr.ChecksumFailures
		r.Captures = append(r.Captures, *cr)
	}
	r.wireRates()
	a.mergeStreams()
	if a.twoCaps {
		r.Compare = a.compare()
	}
	a.verdict()
}

func (a *analyzer) allConns(cs *capState) []*conn {
	list := append([]*conn(nil), cs.closed...)
	for _, c := range cs.conns {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].stream != list[j].stream {
			return list[i].stream < list[j].stream
		}
		if list[i].sport != list[j].sport {
			return list[i].sport < list[j].sport
		}
		return list[i].dport < list[j].dport
	})
	return list
}

// settleChecksums reclassifies a connection whose checksums never matched a
// known pseudo-header but mostly imply one address sum: its pseudo-header
// is unknown (e.g. the keys lack the NAT's public address), not its data
// corrupted.
func (a *analyzer) settleChecksums(cr *CaptureReport, c *conn) {
	if c.ckGood > 0 || c.ckBad == 0 {
		return
	}
	best := 0
	for i := range c.implCnt {
		if c.implCnt[i] > c.implCnt[best] {
			best = i
		}
	}
	if c.implCnt[best]*2 < c.ckBad {
		return
	}
	cr.ChecksumFailures -= c.implCnt[best]
	cr.ChecksumUnverifiable += c.implCnt[best]
	c.ckBad -= c.implCnt[best]
	for _, ref := range c.corrs {
		if ref.implied == c.implied[best] {
			a.rep.Corruptions[ref.idx].TCPChecksum = "unverifiable"
		}
	}
}

func streamReport(c *conn) StreamReport {
	sr := StreamReport{
		Stream: c.stream, SenderPort: c.sport, SYN: c.syn, FIN: c.fin, RST: c.rst,
		OffsetsExact: c.exact, Verified: c.cover.total(),
		Segments: c.segments, Retransmitted: c.retrans, OutOfOrder: c.ooo, CopiesDiffer: c.differ,
		ChecksumFailures: c.ckBad, Unaligned: c.unaligned,
	}
	sr.End = c.cover.end()
	if c.fin {
		sr.End = max(sr.End, c.finOff)
	}
	fillRanges(&sr, &c.cover, &c.corrupt)
	return sr
}

const (
	maxListedGaps    = 64
	maxListedCorrupt = 4096
)

func fillRanges(sr *StreamReport, cover, corrupt *rangeSet) {
	start := int64(0)
	if !sr.OffsetsExact && len(cover.r) > 0 {
		start = cover.r[0].Off // nothing is known before the first byte seen
	}
	g, n := cover.gaps(sr.End)
	for _, x := range g {
		if x.End() <= start {
			n -= x.Len
			continue
		}
		if len(sr.Gaps) < maxListedGaps {
			sr.Gaps = append(sr.Gaps, x)
		}
	}
	sr.GapBytes = n
	sr.Corrupt = append([]Range(nil), corrupt.r...)
	if len(sr.Corrupt) > maxListedCorrupt {
		sr.Corrupt, sr.CorruptTruncated = sr.Corrupt[:maxListedCorrupt], true
	}
}

func sortStreams(s []StreamReport) {
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].Stream != s[j].Stream {
			return s[i].Stream < s[j].Stream
		}
		return s[i].SenderPort < s[j].SenderPort
	})
}

// mergeStreams builds Report.Streams: each test connection as all captures
// together saw it (the NAT rewrites only the outer header, so the inner
// ports and sequence numbers match across capture points).
func (a *analyzer) mergeStreams() {
	type mkey struct {
		stream int
		sport  uint16
		base   uint32
		exact  bool
	}
	type merged struct {
		c conn
	}
	m := map[mkey]*merged{}
	var order []mkey
	for _, cs := range a.caps {
		for _, c := range a.allConns(cs) {
			if c.stream < 0 || (!c.syn && c.segments == 0 && c.unaligned == 0 && !c.fin) {
				continue
			}
			k := mkey{c.stream, c.sport, c.base, c.exact}
			if !c.exact {
				k.base = 0 // inferred bases differ between captures
			}
			x := m[k]
			if x == nil {
				x = &merged{c: conn{stream: c.stream, sport: c.sport, exact: c.exact, cover: c.cover.clone(), corrupt: c.corrupt.clone()}}
				x.c.syn, x.c.fin, x.c.rst, x.c.finOff = c.syn, c.fin, c.rst, c.finOff
				x.c.segments, x.c.retrans, x.c.ooo, x.c.differ, x.c.ckBad, x.c.unaligned = c.segments, c.retrans, c.ooo, c.differ, c.ckBad, c.unaligned
				m[k] = x
				order = append(order, k)
				continue
			}
			x.c.cover.union(&c.cover)
			x.c.corrupt.union(&c.corrupt)
			x.c.syn = x.c.syn || c.syn
			x.c.rst = x.c.rst || c.rst
			if c.fin {
				x.c.fin, x.c.finOff = true, max(x.c.finOff, c.finOff)
			}
			x.c.segments = max(x.c.segments, c.segments)
			x.c.retrans = max(x.c.retrans, c.retrans)
			x.c.ooo = max(x.c.ooo, c.ooo)
			x.c.differ += c.differ
			x.c.ckBad += c.ckBad
			x.c.unaligned = max(x.c.unaligned, c.unaligned)
		}
	}
	for _, k := range order {
		sr := streamReport(&m[k].c)
		a.rep.Streams = append(a.rep.Streams, sr)
		a.rep.BytesVerified += sr.Verified
	}
	sortStreams(a.rep.Streams)
}

// compare matches the two captures' ESP packets by SA and sequence number.
// Two authenticated copies of a packet are identical (an ICV cannot be
// forged), so a packet changed between the points iff one copy
// authenticates and the other does not, or their ICVs differ.
func (a *analyzer) compare() *Comparison {
	cmp := &Comparison{}
	for _, g := range a.groups {
		t0, t1 := &a.caps[0].tracks[g.idx], &a.caps[1].tracks[g.idx]
		n := max(len(t0.seen), len(t1.seen))
		var lost []uint32 // failed in one capture, absent from the other
		for w := 0; w < n; w++ {
			var s0, s1 uint64
			if w < len(t0.seen) {
				s0 = t0.seen[w]
			}
			if w < len(t1.seen) {
				s1 = t1.seen[w]
			}
			if s0|s1 == 0 {
				continue
			}
			both := s0 & s1
			for x := both; x != 0; x &= x - 1 {
				seq := uint32(w*64 + bits.TrailingZeros64(x))
				v0, v1 := t0.valid.has(seq), t1.valid.has(seq)
				same := v0 == v1
				if same && int(seq) < len(t0.fp) && int(seq) < len(t1.fp) {
					same = t0.fp[seq] == t1.fp[seq]
				}
				if same {
					cmp.Same++
					continue
				}
				cmp.Changed++
				what := "ICVs differ"
				switch {
				case v0 && !v1:
					what = "authenticated in the first capture, fails authentication in the second"
				case !v0 && v1:
					what = "fails authentication in the first capture, authenticated in the second"
				}
				a.addChange(cmp, g, seq, what)
			}
			cmp.OnlyFirst += int64(bits.OnesCount64(s0 &^ s1))
			cmp.OnlySecond += int64(bits.OnesCount64(s1 &^ s0))
			for x := (s0 ^ s1); x != 0; x &= x - 1 {
				seq := uint32(w*64 + bits.TrailingZeros64(x))
				if !t0.valid.has(seq) && !t1.valid.has(seq) && len(lost) < 1024 {
					lost = append(lost, seq)
				}
			}
		}
		// A packet whose sequence number was damaged in transit fails
		// authentication under a number the other capture does not have;
		// its ICV bytes still identify it.
		if len(lost) > 0 {
			idx := [2]map[uint64]uint32{fpIndex(t0), fpIndex(t1)}
			for _, seq := range lost {
				i := 0
				if t1.seen.has(seq) {
					i = 1
				}
				tr := [2]*seqTrack{t0, t1}[i]
				if int(seq) >= len(tr.fp) {
					continue
				}
				if orig, ok := idx[1-i][tr.fp[seq]]; ok {
					cmp.Changed++
					if i == 0 {
						cmp.OnlyFirst--
					} else {
						cmp.OnlySecond--
					}
					a.addChange(cmp, g, orig, fmt.Sprintf("arrives at the other capture point as sequence number %d and fails authentication", seq))
				}
			}
		}
	}
	return cmp
}

func fpIndex(t *seqTrack) map[uint64]uint32 {
	m := make(map[uint64]uint32)
	for seq, fp := range t.fp {
		if fp != 0 && t.valid.has(uint32(seq)) {
			m[fp] = uint32(seq)
		}
	}
	return m
}

func (a *analyzer) addChange(cmp *Comparison, g *saGroup, seq uint32, what string) {
	if len(cmp.Examples) >= 16 {
		return
	}
	ch := Change{SPI: g.spi, ESPSeq: seq, What: what}
	for i := 0; i < 2; i++ {
		if t := &a.caps[i].tracks[g.idx]; int(seq) < len(t.frame) {
			ch.Frames[i] = int64(t.frame[seq])
		}
	}
	cmp.Examples = append(cmp.Examples, ch)
}

// verdict fills Wire, Reason, Missing and Notes.
func (a *analyzer) verdict() {
	r := a.rep
	var missing, notes []string
	name := func(i int) string { return filepath.Base(a.caps[i].path) }

	for i, c := range r.Captures {
		if c.Truncated {
			missing = append(missing, fmt.Sprintf("capture %s is incomplete: %s", name(i), c.TruncatedReason))
		}
		if c.Dropped > 0 {
			missing = append(missing, fmt.Sprintf("capture %s: the capturing tool dropped %d packets", name(i), c.Dropped))
		}
		if c.Snapped > 0 {
			missing = append(missing, fmt.Sprintf("capture %s: %d packets cut short by the snap length (capture with -s 0)", name(i), c.Snapped))
		}
		if c.Fragments > 0 {
			missing = append(missing, fmt.Sprintf("capture %s: %d IP fragments, which the analysis does not reassemble", name(i), c.Fragments))
		}
		if c.UnknownSPI > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: %d ESP packets of SAs not in the keys", name(i), c.UnknownSPI))
		}
		if c.BadESP > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: %d authenticated ESP packets with a malformed trailer or length", name(i), c.BadESP))
		}
		if c.BadPadding > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: %d ESP packets with non-standard padding bytes", name(i), c.BadPadding))
		}
		if c.ChecksumUnverifiable > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: %d TCP checksums unverifiable: no address pair in the keys matches their pseudo-header (keys lack the NAT's address?)", name(i), c.ChecksumUnverifiable))
		}
		if c.ReverseData > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: the receiver sent %d payload bytes on test connections", name(i), c.ReverseData))
		}
		if c.OutOfWindow > 0 {
			notes = append(notes, fmt.Sprintf("capture %s: %d segments far outside their stream's sequence space, not verified", name(i), c.OutOfWindow))
		}
	}
	if r.Packets == 0 {
		missing = append(missing, "the capture holds no packets")
	} else if r.ESPPackets == 0 {
		missing = append(missing, fmt.Sprintf("no ESP packet matches the keys' SPIs (%s): wrong keys file, or not this run's capture", a.spiList()))
	}

	// SAs: keys that authenticate nothing, missing and undecryptable packets.
	for _, g := range a.groups {
		var packets, valid, fails int64
		var seen, val bitset
		var last uint32
		for _, cs := range a.caps {
			t := &cs.tracks[g.idx]
			packets += t.packets
			fails += t.icvFail
			if t.haveValid {
				valid++
				last = max(last, t.last)
			}
			seen = orBits(seen, t.seen)
			val = orBits(val, t.valid)
		}
		if packets > 0 && valid == 0 {
			missing = append(missing, fmt.Sprintf("none of the %d ESP packets of SA 0x%08x authenticates: the keys do not match this capture (wrong --keys file?)", packets, g.spi))
			continue
		}
		if g.dir != dirData || last == 0 {
			if fails > 0 {
				notes = append(notes, fmt.Sprintf("SA 0x%08x (%s): %d packets failed authentication", g.spi, dirOr(g.dir), fails))
			}
			continue
		}
		miss := seen.countRange(1, last, false)
		// Seen but never authenticated, in any capture.
		var undec int64
		for w := range seen {
			undec += int64(bits.OnesCount64(seen[w] &^ wordOf(val, w)))
		}
		r.ESPMissing += miss
		r.Undecryptable += undec
		if miss > 0 && a.opts.ReceiverInside && seen.has(1) {
			// The capture dropped nothing and is on the only path from
			// sender to receiver: these were lost before it (a full ring,
			// a queue) and reached no one; TCP sent their bytes again.
			notes = append(notes, fmt.Sprintf("SA 0x%08x (sender to receiver): %d of %d ESP packets were lost before the capture point (sequence gaps%s), which dropped nothing: never delivered",
				g.spi, miss, last, firstGap(seen, last)))
		} else if miss > 0 {
			why := "dropped by the capture or before it"
			if !seen.has(1) {
				why = "the capture started late or dropped them"
			}
			missing = append(missing, fmt.Sprintf("SA 0x%08x (sender to receiver): %d of %d ESP packets are in no capture (sequence gaps%s): %s",
				g.spi, miss, last, firstGap(seen, last), why))
		}
		if undec > 0 {
			missing = append(missing, fmt.Sprintf("SA 0x%08x (sender to receiver): %d ESP packets fail authentication in every capture that has them, their contents are unknown", g.spi, undec))
		}
	}

	// Streams.
	byStream := make([][]StreamReport, a.streams)
	for _, s := range r.Streams {
		byStream[s.Stream] = append(byStream[s.Stream], s)
	}
	for i, list := range byStream {
		if len(list) == 0 {
			if r.ESPPackets > 0 {
				missing = append(missing, fmt.Sprintf("stream %d (port %d): not seen in the capture", i, a.basePort+i))
			}
			continue
		}
		withData := 0
		for _, s := range list {
			if s.Verified > 0 || s.Unaligned > 0 {
				withData++
			}
		}
		if withData > 1 {
			notes = append(notes, fmt.Sprintf("stream %d: %d connections carried data; each was checked from its own offset 0", i, withData))
		}
		for _, s := range list {
			id := fmt.Sprintf("stream %d", i)
			if len(list) > 1 {
				id = fmt.Sprintf("stream %d (sender port %d)", i, s.SenderPort)
			}
			if !s.OffsetsExact {
				missing = append(missing, fmt.Sprintf("%s: SYN not captured (capture started late?): offsets inferred from the pattern, the stream's start unchecked", id))
			}
			if s.Unaligned > 0 {
				missing = append(missing, fmt.Sprintf("%s: %d bytes could not be placed in the stream", id, s.Unaligned))
			}
			if !s.FIN && !s.RST {
				missing = append(missing, fmt.Sprintf("%s: no FIN or RST seen (capture stopped early?)", id))
			}
			if s.GapBytes > 0 {
				missing = append(missing, fmt.Sprintf("%s: %d bytes in %d gap(s) were never captured (first at offset %d)", id, s.GapBytes, max(len(s.Gaps), 1), firstGapOff(s)))
			}
			if s.CopiesDiffer > 0 {
				notes = append(notes, fmt.Sprintf("%s: %d retransmitted segments differ from the earlier copy", id, s.CopiesDiffer))
			}
			if s.ChecksumFailures > 0 {
				notes = append(notes, fmt.Sprintf("%s: %d data segments with a bad TCP checksum", id, s.ChecksumFailures))
			}
		}
	}
	if r.ChecksumFailures > 0 {
		notes = append(notes, fmt.Sprintf("%d TCP segments in all with a bad checksum (computed over the SA's own addresses, as the sender did)", r.ChecksumFailures))
	}
	r.Missing, r.Notes = missing, notes

	ncorr := 0
	var foreign []string
	for _, s := range r.Streams {
		ncorr += len(s.Corrupt)
		var bad int64
		for _, x := range s.Corrupt {
			bad += x.Len
		}
		if s.Verified >= minPatternCheck && bad*foreignFraction > s.Verified {
			foreign = append(foreign, fmt.Sprintf("stream %d: %d of %d bytes differ from the pattern", s.Stream, bad, s.Verified))
		}
	}
	switch {
	case len(foreign) > 0:
		// Corruption is sparse; bytes that mostly differ are another
		// stream than the keys describe.
		r.Wire, r.PatternMismatch = WireUnknown, true
		r.Reason = fmt.Sprintf("the streams do not follow the keys' pattern %q, seed %d (%s): the keys are not this run's, or the sender sent other data", a.k.Pattern, a.k.Seed, foreign[0])
		r.Missing = append(r.Missing, foreign...)
	case ncorr > 0:
		r.Wire = WireEncap
		first := r.Corruptions[0]
		r.Reason = fmt.Sprintf("%d corrupted byte range(s) on the wire in authenticated ESP packets: the sender's output path corrupted them (first: stream %d offset %d, %d bytes, frame %d of %s, TCP checksum %s)",
			ncorr, first.Stream, first.Offset, first.Length, first.Frame, name(first.Capture), first.TCPChecksum)
	case r.Compare != nil && r.Compare.Changed > 0:
		r.Wire = WireNAT
		ex := r.Compare.Examples[0]
		r.Reason = fmt.Sprintf("%d ESP packets changed between the capture points (first: SA 0x%08x sequence %d, frames %d and %d: %s)",
			r.Compare.Changed, ex.SPI, ex.ESPSeq, ex.Frames[0], ex.Frames[1], ex.What)
	case len(missing) > 0:
		r.Wire = WireUnknown
		r.Reason = fmt.Sprintf("no corruption seen in %d verified bytes, but the capture is not complete: %s", r.BytesVerified, missing[0])
		if len(missing) > 1 {
			r.Reason += fmt.Sprintf(" (and %d more)", len(missing)-1)
		}
	default:
		r.Wire = WireClean
		r.Reason = fmt.Sprintf("all %d bytes of %d streams were on the wire in authenticated ESP packets and match the pattern", r.BytesVerified, a.streams)
	}
}

func (a *analyzer) spiList() string {
	var b bytes.Buffer
	for i, g := range a.groups {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "0x%08x", g.spi)
	}
	return b.String()
}

func dirOr(d int) string {
	if d == dirUnknown {
		return "direction unknown"
	}
	return dirNames[d]
}

func orBits(a, b bitset) bitset {
	if len(b) > len(a) {
		a, b = b, a
	}
	out := append(bitset(nil), a...)
	for i := range b {
		out[i] |= b[i]
	}
	return out
}

func wordOf(b bitset, w int) uint64 {
	if w < len(b) {
		return b[w]
	}
	return 0
}

func firstGap(seen bitset, last uint32) string {
	for s := uint32(1); s <= last; s++ {
		if !seen.has(s) {
			return fmt.Sprintf(", first at %d", s)
		}
	}
	return ""
}

func firstGapOff(s StreamReport) int64 {
	if len(s.Gaps) > 0 {
		return s.Gaps[0].Off
	}
	return 0
}
