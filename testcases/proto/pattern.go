package proto

import "encoding/binary"

// PatternBlock is the period of a "prng" stream in bytes.
const PatternBlock = 1 << 16

// Pattern produces the bytes of one stream, so that the receiver (and the
// wire analysis) can predict every byte at every offset.
type Pattern struct {
	zero  bool
	block []byte // PatternBlock bytes, repeated
}

// NewPattern returns the pattern of stream s for kind ("zero" or "prng") and
// seed. Unknown kinds behave as "zero".
func NewPattern(kind string, seed uint64, stream int) *Pattern {
	if kind != "prng" {
		return &Pattern{zero: true}
	}
	// xorshift64*: cheap and deterministic; the block is regenerated per
	// stream so streams differ, and offsets in a block are distinct enough
	// that a shifted or duplicated segment does not match.
	x := seed ^ (uint64(stream)+1)*0x9E3779B97F4A7C15
	if x == 0 {
		x = 1
	}
	b := make([]byte, PatternBlock+8)
	for i := 0; i < PatternBlock; i += 8 {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint64(b[i:], x*0x2545F4914F6CDD1D)
	}
	return &Pattern{block: b[:PatternBlock]}
}

// Fill writes the pattern bytes for stream offsets [off, off+len(buf)).
func (p *Pattern) Fill(buf []byte, off int64) {
	if p.zero {
		clear(buf)
		return
	}
	for len(buf) > 0 {
		i := int(off % PatternBlock)
		n := copy(buf, p.block[i:])
		buf = buf[n:]
		off += int64(n)
	}
}

// Mismatch returns the index of the first byte of got that differs from the
// pattern at offset off, or -1 when all match.
func (p *Pattern) Mismatch(got []byte, off int64) int {
	done := 0
	for done < len(got) {
		if p.zero {
			for i, c := range got[done:] {
				if c != 0 {
					return done + i
				}
			}
			return -1
		}
		i := int((off + int64(done)) % PatternBlock)
		want := p.block[i:]
		seg := got[done:]
		if len(seg) > len(want) {
			seg = seg[:len(want)]
		}
		if string(seg) != string(want[:len(seg)]) {
			for j := range seg {
				if seg[j] != want[j] {
					return done + j
				}
			}
		}
		done += len(seg)
	}
	return -1
}
