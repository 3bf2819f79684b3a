package testcases

import (
	"context"

	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
)

// analyzeWire decrypts the run's capture and fills r.Wire. With the
// receiver's findings it can tell decapsulation from encapsulation.
func analyzeWire(ctx context.Context, r *Report, recv *proto.Result) {
	keys, err := esp.LoadKeys(r.Keys)
	if err != nil {
		r.Wire = Wire{Verdict: "unknown", Detail: err.Error()}
		return
	}
	// The receiver read what it reports on before its guest stopped, so
	// before the wire closed: every copy it consumed is in the capture.
	rep, err := esp.Analyze(ctx, esp.AnalyzeOptions{Pcaps: r.Pcaps, Keys: keys,
		ReceiverInside: recv != nil && r.captureComplete})
	if err != nil {
		r.Wire = Wire{Verdict: "unknown", Detail: err.Error()}
		return
	}
	var rc []proto.Corruption
	if recv != nil {
		rc = recv.Corruptions
	}
	v, why := esp.Explain(rep, rc)
	r.Wire = Wire{
		Verdict:        v,
		Detail:         why,
		Missing:        rep.Missing,
		Packets:        rep.Packets,
		ESP:            rep.ESPPackets,
		ESPPerSecond:   rep.ESPPerSecond,
		Sizes:          rep.SizeMix,
		DistinctSizes:  rep.DistinctSizes,
		BytesVerified:  rep.BytesVerified,
		ICVFailures:    rep.ICVFailures,
		Corruptions:    len(rep.Corruptions) + rep.CorruptionsDropped,
		ChecksumErrors: rep.ChecksumFailures,
		Undecryptable:  rep.Undecryptable,
	}
	seen := map[string]bool{}
	for _, c := range rep.Corruptions {
		if t := c.CipherBlockText; t != "" && !seen[t] {
			seen[t] = true
			r.Wire.CipherBlockTexts = append(r.Wire.CipherBlockTexts, t)
		}
	}
}
