package esp

import (
	"context"
	"math"
	"strings"
	"testing"
)

// TestSizeMix: the report counts the ESP packets by size and gives their
// rate over the capture's time. The synthetic captures advance 37 µs a
// packet written; in cbc-aes-sha1 pure ACKs (and SYN, FIN) are 68 bytes of
// ESP, a segment of n payload bytes 20+n+2 rounded up to 16, plus 36.
func TestSizeMix(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nat      bool
		total    int64
		mss      int
		mix      []SizeCount
		distinct int
	}{
		// 100 segments of 1000 bytes (1060 on the wire), 50 ACKs, 3 of
		// the handshake and 3 of the close.
		{"direct", false, 100000, 1000, []SizeCount{{128, 56}, {1400, 100}}, 2},
		// 71 full segments of 1448 (1508, over MTU 1500's 1472), and one
		// of 392 (452); both captures of a NAT run see the same packets.
		{"nat, two sizes of data", true, 71*1448 + 392, 1448, []SizeCount{{128, 42}, {512, 1}, {65536, 71}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(t, "cbc-aes-sha1", "zero", 1, tc.nat)
			s.stream(0, tc.total, tc.mss, nil)
			r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: s.close(), Keys: s.keys})
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, c := range tc.mix {
				n += c.Packets
			}
			if len(r.SizeMix) != len(tc.mix) {
				t.Fatalf("size mix %+v, want %+v", r.SizeMix, tc.mix)
			}
			for i := range tc.mix {
				if r.SizeMix[i] != tc.mix[i] {
					t.Errorf("size mix %+v, want %+v", r.SizeMix, tc.mix)
				}
			}
			wantInt(t, "distinct sizes", r.DistinctSizes, tc.distinct)
			// Every capture saw every packet: the rate is one capture's.
			wantInt(t, "ESP packets of one capture", r.Captures[0].ESPPackets, n)
			// The synthetic NAT writes each packet to both captures, a
			// tick apart.
			tick := 37e-6 * float64(len(r.Captures))
			if want := float64(n) / (float64(n-1) * tick); math.Abs(r.ESPPerSecond-want) > want*1e-3 {
				t.Errorf("ESP packets per second = %.0f, want %.0f", r.ESPPerSecond, want)
			}
			d := DescribeMix(r.ESPPerSecond, r.SizeMix, r.DistinctSizes)
			if !strings.Contains(d, " packets/s, ") || !strings.Contains(d, "<=128 ") {
				t.Errorf("DescribeMix = %q", d)
			}
			if tc.nat && !strings.Contains(d, "<=512 1%") {
				t.Errorf("DescribeMix = %q, want the one short segment as <=512 1%%", d)
			}
		})
	}
}

// TestDescribeMix: shares round to whole percent, and a bucket with
// packets never reads 0%.
func TestDescribeMix(t *testing.T) {
	got := DescribeMix(4528.4, []SizeCount{{128, 500}, {256, 2}, {1472, 9498}}, 5)
	if want := "4528 packets/s, 5 sizes: <=128 5%, <=256 <1%, <=1472 95%"; got != want {
		t.Errorf("DescribeMix = %q, want %q", got, want)
	}
}
