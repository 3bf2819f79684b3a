package esp

import (
	"fmt"
	"sort"
	"strings"
)

// SizeCount is one bucket of the size mix: the ESP packets of at most
// Upto bytes of ESP (SPI to ICV) and more than the previous bucket's.
type SizeCount struct {
	Upto    int   `json:"upto"`
	Packets int64 `json:"packets"`
}

// sizeBuckets are the buckets' upper bounds. 1472 bytes is a full packet
// at MTU 1500 in NAT-T (1500 - 20 IP - 8 UDP); 128 holds the pure ACKs of
// the reverse direction; larger ones come from a larger MTU (or a capture
// of segmentation offload before it split them).
var sizeBuckets = []int{128, 256, 512, 1024, 1400, 1472, 1 << 16}

// espSeen records an ESP packet of n bytes at the current packet's time.
func (cs *capState) espSeen(n int) {
	if cs.firstESP.IsZero() {
		cs.firstESP = cs.ts
	}
	cs.lastESP = cs.ts
	if cs.sizes == nil {
		cs.sizes = make([]bool, 1<<16)
		cs.sizeCount = make([]int64, len(sizeBuckets))
	}
	if n >= len(cs.sizes) {
		n = len(cs.sizes) - 1
	}
	cs.sizes[n] = true
	cs.sizeCount[sort.SearchInts(sizeBuckets, n)]++
}

// finishRates sets the capture report's time span, packet rate and size
// mix of its ESP packets.
func (cs *capState) finishRates() {
	cr := cs.rep
	if cs.sizes == nil {
		return
	}
	for _, seen := range cs.sizes {
		if seen {
			cr.DistinctSizes++
		}
	}
	for i, n := range cs.sizeCount {
		if n > 0 {
			cr.SizeMix = append(cr.SizeMix, SizeCount{Upto: sizeBuckets[i], Packets: n})
		}
	}
	if d := cs.lastESP.Sub(cs.firstESP); d > 0 {
		cr.ESPSeconds = d.Seconds()
		cr.ESPPerSecond = float64(cr.ESPPackets) / cr.ESPSeconds
	}
}

// wireRates sets the report's rate and size mix from the capture that saw
// the most ESP packets: the captures of a NAT run see the same packets
// twice, so they are not added up.
func (r *Report) wireRates() {
	best := -1
	for i, c := range r.Captures {
		if best < 0 || c.ESPPackets > r.Captures[best].ESPPackets {
			best = i
		}
	}
	if best < 0 {
		return
	}
	c := r.Captures[best]
	r.ESPPerSecond, r.SizeMix, r.DistinctSizes = c.ESPPerSecond, c.SizeMix, c.DistinctSizes
}

// DescribeMix says in one line what a run pushed through ESP: packets per
// second and the share of each size bucket, as in "4528 packets/s, 5
// sizes: <=128 5%, <=256 <1%, <=1472 95%".
func DescribeMix(perSecond float64, mix []SizeCount, distinct int) string {
	var total int64
	for _, s := range mix {
		total += s.Packets
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f packets/s, %d sizes", perSecond, distinct)
	for i, s := range mix {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		share := fmt.Sprintf("%.0f%%", 100*float64(s.Packets)/float64(max(total, 1)))
		if share == "0%" {
			share = "<1%" // a bucket is listed only when it has packets
		}
		fmt.Fprintf(&b, "%s<=%d %s", sep, s.Upto, share)
	}
	return b.String()
}
