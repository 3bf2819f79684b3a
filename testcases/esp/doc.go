// Package esp is the wire analysis of the natt-esp test: it decrypts the
// ESP-in-UDP (NAT-T, RFC 3948) transport-mode traffic a run captured and
// says whether the corruption the receiver saw was already on the wire.
//
// A run saves its Keys (suite, SAs, pattern, seed, streams) next to its
// capture with ExportForPcap, which also writes Wireshark's esp_sa file.
// Analyze reads one capture, or two taken on either side of a NAT, with
// those keys: it authenticates every ESP packet (hmac(sha1) and
// hmac(sha256) at their truncation lengths, rfc4106(gcm(aes)), null
// encryption), decrypts it, checks the inner TCP checksum over the
// addresses the sending guest used (a NAT rewrites the outer ones, and in
// NAT-T transport mode the receiver does not check it), places each segment
// in its stream by sequence number and compares every byte with
// proto.NewPattern. The Report's Wire verdict is WireClean, WireEncap (an
// authenticated packet carried wrong bytes: the sender's output path),
// WireNAT (packets changed between the capture points) or WireUnknown (the
// capture is incomplete; Report.Missing says how). Classify adds the
// receiver's findings and can answer WireDecap: the wire carried the right
// bytes where the receiver saw wrong ones.
//
// A test on a real run's capture is three calls:
//
//	r, err := esp.AnalyzeRun(ctx, "run.pcap") // keys from run.keys.json
//	verdict := esp.Classify(r, receiverResult.Corruptions)
package esp

import (
	"context"
	"fmt"
)

// AnalyzeRun analyzes the captures of a kbisect run (one, or the sender's
// and the receiver's side of a NAT) with the keys saved next to the first
// (KeysPathFor).
func AnalyzeRun(ctx context.Context, pcaps ...string) (*Report, error) {
	if len(pcaps) == 0 {
		return nil, fmt.Errorf("wire analysis needs a capture")
	}
	k, err := LoadKeys(KeysPathFor(pcaps[0]))
	if err != nil {
		return nil, err
	}
	return Analyze(ctx, AnalyzeOptions{Pcaps: pcaps, Keys: k})
}
