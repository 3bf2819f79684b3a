package esp

import (
	"encoding/binary"
	"math/bits"
	"sort"
)

// Range is a run of stream bytes [Off, Off+Len).
type Range struct {
	Off int64 `json:"offset"`
	Len int64 `json:"length"`
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// rangeSet is a sorted set of disjoint, non-adjacent ranges. Streams arrive
// almost in order, so adding at the end is the fast path.
type rangeSet struct {
	r []Range
}

// end returns the end of the last range, 0 when empty.
func (s *rangeSet) end() int64 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[len(s.r)-1].End()
}

// total returns the number of bytes in the set.
func (s *rangeSet) total() int64 {
	var n int64
	for _, r := range s.r {
		n += r.Len
	}
	return n
}

// add inserts [a, b) and returns how many of its bytes were already there.
func (s *rangeSet) add(a, b int64) (overlap int64) {
	if a >= b {
		return 0
	}
	n := len(s.r)
	if n == 0 || a > s.r[n-1].End() {
		s.r = append(s.r, Range{a, b - a})
		return 0
	}
	if a == s.r[n-1].End() {
		s.r[n-1].Len += b - a
		return 0
	}
	// First range that ends at or after a (may touch it).
	i := sort.Search(n, func(i int) bool { return s.r[i].End() >= a })
	// Ranges i..j-1 touch or overlap [a, b).
	j := i
	lo, hi := a, b
	for j < n && s.r[j].Off <= b {
		overlap += max(0, min(b, s.r[j].End())-max(a, s.r[j].Off))
		lo = min(lo, s.r[j].Off)
		hi = max(hi, s.r[j].End())
		j++
	}
	merged := Range{lo, hi - lo}
	if i == j {
		s.r = append(s.r, Range{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = merged
		return overlap
	}
	s.r[i] = merged
	s.r = append(s.r[:i+1], s.r[j:]...)
	return overlap
}

// covered returns how many bytes of [a, b) are in the set.
func (s *rangeSet) covered(a, b int64) int64 {
	var n int64
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].End() > a })
	for ; i < len(s.r) && s.r[i].Off < b; i++ {
		n += min(b, s.r[i].End()) - max(a, s.r[i].Off)
	}
	return n
}

// clip appends to dst the parts of the set inside [a, b).
func (s *rangeSet) clip(dst []Range, a, b int64) []Range {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].End() > a })
	for ; i < len(s.r) && s.r[i].Off < b; i++ {
		lo, hi := max(a, s.r[i].Off), min(b, s.r[i].End())
		dst = append(dst, Range{lo, hi - lo})
	}
	return dst
}

// gaps returns the holes of the set in [0, end), and their total size.
func (s *rangeSet) gaps(end int64) (g []Range, n int64) {
	at := int64(0)
	for _, r := range s.r {
		if r.Off >= end {
			break
		}
		if r.Off > at {
			g = append(g, Range{at, r.Off - at})
			n += r.Off - at
		}
		at = max(at, r.End())
	}
	if at < end {
		g = append(g, Range{at, end - at})
		n += end - at
	}
	return g, n
}

// union adds every range of o.
func (s *rangeSet) union(o *rangeSet) {
	for _, r := range o.r {
		s.add(r.Off, r.End())
	}
}

// clone returns an independent copy.
func (s *rangeSet) clone() rangeSet { return rangeSet{r: append([]Range(nil), s.r...)} }

// onesSum adds b to the running ones' complement sum as 16-bit big-endian
// words (RFC 1071). It loads 8 bytes at a time in little-endian order and
// swaps once at the end, which RFC 1071 allows since the sum is byte-order
// independent; this is several times faster than a 16-bit loop and the TCP
// checksum of every captured segment is on the hot path.
func onesSum(b []byte) uint64 {
	var s, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	s += c
	// Fold to 16 bits (still little-endian word order).
	var t uint64
	for i, x := range b {
		if i&1 == 0 {
			t += uint64(x)
		} else {
			t += uint64(x) << 8
		}
	}
	s = fold64(s) + fold64(t)
	return uint64(bits.ReverseBytes16(uint16(fold64(s))))
}

// fold64 folds a 64-bit ones' complement sum to 16 bits.
func fold64(s uint64) uint64 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return s
}

// addrSum is the ones' complement sum of a pseudo-header's two IPv4 addresses.
func addrSum(src, dst [4]byte) uint64 {
	return (uint64(src[0])<<8 | uint64(src[1])) + (uint64(src[2])<<8 | uint64(src[3])) +
		(uint64(dst[0])<<8 | uint64(dst[1])) + (uint64(dst[2])<<8 | uint64(dst[3]))
}
