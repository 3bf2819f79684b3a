package proto

import "testing"

func TestPatternMismatch(t *testing.T) {
	for _, kind := range []string{"zero", "prng"} {
		p := NewPattern(kind, 42, 3)
		for _, tc := range []struct {
			off  int64
			n    int
			flip int // index to corrupt, -1 none
		}{
			{0, 100, -1}, {0, 100, 0}, {PatternBlock - 10, 40, 15}, {3*PatternBlock + 7, 2 * PatternBlock, PatternBlock + 1}, {12345, 1, 0},
		} {
			buf := make([]byte, tc.n)
			p.Fill(buf, tc.off)
			if tc.flip >= 0 {
				buf[tc.flip] ^= 0x40
			}
			if got := p.Mismatch(buf, tc.off); got != tc.flip {
				t.Errorf("%s off %d n %d flip %d: Mismatch = %d", kind, tc.off, tc.n, tc.flip, got)
			}
		}
	}
	// Streams and seeds differ, so a segment delivered to the wrong stream
	// or run is caught.
	a, b := make([]byte, 64), make([]byte, 64)
	NewPattern("prng", 1, 0).Fill(a, 0)
	NewPattern("prng", 1, 1).Fill(b, 0)
	if string(a) == string(b) {
		t.Error("streams 0 and 1 have the same bytes")
	}
	if NewPattern("prng", 2, 0).Mismatch(a, 0) < 0 {
		t.Error("seed 2 matches seed 1's bytes")
	}
}
