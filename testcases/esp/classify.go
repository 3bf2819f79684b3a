package esp

import (
	"fmt"

	"github.com/kbisect/kbisect/testcases/proto"
)

// Classify combines the wire analysis with the corruptions the receiving
// application saw (the receiver agent's proto.Result.Corruptions): WireEncap
// when the wire already carried them (or carried other corruptions: an
// authenticated corrupted packet is the sender's doing whatever the
// receiver reported), WireDecap when the wire carried the right bytes at
// every offset where the receiver saw wrong ones (the receiver's input path
// corrupted them), WireUnknown when the capture cannot tell. Without
// receiver corruptions it returns the report's own verdict.
func Classify(r *Report, receiverCorruptions []proto.Corruption) string {
	v, _ := Explain(r, receiverCorruptions)
	return v
}

// Explain is Classify with a one-sentence reason.
func Explain(r *Report, receiverCorruptions []proto.Corruption) (verdict, reason string) {
	var rc []proto.Corruption
	for _, c := range receiverCorruptions {
		if c.Side == "" || c.Side == proto.RoleReceiver {
			rc = append(rc, c)
		}
	}
	if len(rc) == 0 || r.PatternMismatch {
		return r.Wire, r.Reason
	}
	var encap, decap []proto.Corruption
	var unknown []string
	for _, c := range rc {
		switch v, why := classifyOne(r, c); v {
		case WireEncap:
			encap = append(encap, c)
		case WireDecap:
			decap = append(decap, c)
		default:
			unknown = append(unknown, fmt.Sprintf("stream %d offset %d: %s", c.Stream, c.Offset, why))
		}
	}
	// Wire corruptions the receiver did not report.
	unreported := 0
	for _, s := range r.Streams {
		for _, x := range s.Corrupt {
			seen := false
			for _, c := range rc {
				if c.Stream == s.Stream && c.Offset < x.End() && c.Offset+int64(max(c.Length, 1)) > x.Off {
					seen = true
				}
			}
			if !seen {
				unreported++
			}
		}
	}
	switch {
	case len(encap) > 0:
		reason = fmt.Sprintf("%d of the %d corruptions the receiver saw were already on the wire in authenticated ESP packets (first: stream %d offset %d): the sender's output path",
			len(encap), len(rc), encap[0].Stream, encap[0].Offset)
		if len(decap) > 0 {
			reason += fmt.Sprintf("; %d others were right on the wire (first: stream %d offset %d), so the receiver corrupted those", len(decap), decap[0].Stream, decap[0].Offset)
		}
		return WireEncap, reason
	case unreported > 0:
		reason = fmt.Sprintf("the wire carried %d corrupted byte range(s) in authenticated ESP packets that the receiver did not report (%s)", unreported, r.Reason)
		if len(decap) > 0 {
			reason += fmt.Sprintf("; the %d the receiver reported were right on the wire (first: stream %d offset %d), so the receiver corrupted those too", len(decap), decap[0].Stream, decap[0].Offset)
		}
		return WireEncap, reason
	case len(decap) == len(rc):
		return WireDecap, fmt.Sprintf("the wire carried the right bytes, in authenticated ESP packets, at all %d offsets where the receiver saw corruption (first: stream %d offset %d): the receiver's input path (decryption or after) corrupted them",
			len(rc), decap[0].Stream, decap[0].Offset)
	default:
		return WireUnknown, fmt.Sprintf("the capture cannot tell where %d of the %d receiver corruptions happened: %s", len(unknown), len(rc), unknown[0])
	}
}

// classifyOne places one receiver corruption.
func classifyOne(r *Report, c proto.Corruption) (string, string) {
	lo, hi := c.Offset, c.Offset+int64(max(c.Length, 1))
	var streams []StreamReport
	for _, s := range r.Streams {
		if s.Stream == c.Stream && (s.Verified > 0 || s.Unaligned > 0) {
			streams = append(streams, s)
		}
	}
	for _, w := range r.Corruptions {
		if w.Stream == c.Stream && w.OffsetExact && w.Offset < hi && w.Offset+int64(w.Length) > lo {
			return WireEncap, ""
		}
	}
	if len(streams) == 0 {
		return WireUnknown, "stream not in the capture"
	}
	if len(streams) > 1 {
		return WireUnknown, fmt.Sprintf("%d connections carried this stream, the offset is ambiguous", len(streams))
	}
	s := streams[0]
	if !s.OffsetsExact {
		return WireUnknown, "the stream's SYN was not captured, offsets on the wire are not exact"
	}
	for _, x := range s.Corrupt {
		if x.Off < hi && x.End() > lo {
			return WireEncap, ""
		}
	}
	if s.CorruptTruncated {
		return WireUnknown, "too many corruptions on the wire to list"
	}
	if hi > s.End {
		return WireUnknown, fmt.Sprintf("beyond the %d bytes the capture holds", s.End)
	}
	if len(s.Gaps) >= maxListedGaps {
		return WireUnknown, "the capture has too many gaps in this stream"
	}
	for _, g := range s.Gaps {
		if g.Off < hi && g.End() > lo {
			return WireUnknown, "these bytes were never captured"
		}
	}
	if !s.FIN && !s.RST && !r.ReceiverInside {
		return WireUnknown, "the capture does not reach the stream's end, a later copy may have been delivered"
	}
	if r.ESPMissing > 0 {
		return WireUnknown, fmt.Sprintf("%d ESP packets of the data SA are missing from the capture, one may have held these bytes", r.ESPMissing)
	}
	if r.Undecryptable > 0 {
		return WireUnknown, fmt.Sprintf("%d ESP packets of the data SA fail authentication, one may have held these bytes", r.Undecryptable)
	}
	return WireDecap, ""
}
