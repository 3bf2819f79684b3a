package esp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kbisect/kbisect/testcases/proto"
)

// Explained is an analysis with the receiving agent's corruptions placed
// (see Explain), as kbisect analyze prints it.
type Explained struct {
	*Report
	// CaptureWire is the capture's own verdict when the receiver's
	// corruptions changed it.
	CaptureWire         string `json:"capture_wire,omitempty"`
	ReceiverCorruptions int    `json:"receiver_corruptions,omitempty"`
}

// AnalyzeFiles analyses the captures with the keys in keysPath and, if
// receiverPath is not empty, places the corruptions the receiving agent
// saw (see Explain). It returns the keys too, for WriteText.
func AnalyzeFiles(ctx context.Context, pcaps []string, keysPath, receiverPath string) (*Explained, *Keys, error) {
	keys, err := LoadKeys(keysPath)
	if err != nil {
		return nil, nil, err
	}
	var recv []proto.Corruption
	if receiverPath != "" {
		if recv, err = LoadReceiverCorruptions(receiverPath); err != nil {
			return nil, nil, err
		}
	}
	rep, err := Analyze(ctx, AnalyzeOptions{Pcaps: pcaps, Keys: keys})
	if err != nil {
		return nil, nil, err
	}
	out := &Explained{Report: rep}
	if receiverPath != "" {
		out.CaptureWire = rep.Wire
		out.ReceiverCorruptions = len(recv)
		rep.Wire, rep.Reason = Explain(rep, recv)
	}
	return out, keys, nil
}

// LoadReceiverCorruptions reads the corruptions the receiver saw from a
// proto.Result, a kbisect run JSON (both have "corruptions"), or a bare
// array of corruptions.
func LoadReceiverCorruptions(path string) ([]proto.Corruption, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("receiver result: %w", err)
	}
	var list []proto.Corruption
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var obj struct {
		Corruptions *[]proto.Corruption `json:"corruptions"`
		Result      *proto.Result       `json:"result"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("receiver result %s: not JSON with corruptions: %w", path, err)
	}
	switch {
	case obj.Corruptions != nil:
		return *obj.Corruptions, nil
	case obj.Result != nil:
		return obj.Result.Corruptions, nil
	}
	return nil, errors.New("receiver result " + path + ": no \"corruptions\" field; give the receiving agent's result JSON")
}

// WriteText writes the analysis for people, ending with the tshark command
// line that decrypts the capture with keys.
func (out *Explained) WriteText(w io.Writer, keys *Keys) {
	r := out.Report
	fmt.Fprintf(w, "wire: %s\n", r.Wire)
	fmt.Fprintf(w, "reason: %s\n", r.Reason)
	if out.CaptureWire != "" && out.CaptureWire != r.Wire {
		fmt.Fprintf(w, "capture alone: %s (%d receiver corruptions placed)\n", out.CaptureWire, out.ReceiverCorruptions)
	}
	fmt.Fprintf(w, "verified: %s on the wire, %d packets, %d ESP, %d ICV failures, %d bad TCP checksums\n",
		megabytes(r.BytesVerified), r.Packets, r.ESPPackets, r.ICVFailures, r.ChecksumFailures)
	if r.ESPPerSecond > 0 {
		fmt.Fprintf(w, "esp: %s\n", DescribeMix(r.ESPPerSecond, r.SizeMix, r.DistinctSizes))
	}
	for _, c := range r.Captures {
		fmt.Fprintf(w, "capture %s (%s side, %s): %d packets, %d ESP, %d ICV failures, %d TCP segments, %d bad checksums, %s verified\n",
			c.Path, c.Side, c.LinkType, c.Packets, c.ESPPackets, c.ICVFailures, c.TCPSegments, c.ChecksumFailures, megabytes(c.BytesVerified))
	}
	if r.Compare != nil {
		fmt.Fprintf(w, "between the captures: %d ESP packets identical, %d changed, %d only in the first, %d only in the second\n",
			r.Compare.Same, r.Compare.Changed, r.Compare.OnlyFirst, r.Compare.OnlySecond)
	}
	for _, s := range r.Streams {
		var flags []string
		for _, f := range []struct {
			name string
			on   bool
		}{{"SYN", s.SYN}, {"FIN", s.FIN}, {"RST", s.RST}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		fmt.Fprintf(w, "stream %d (sender port %d): %d bytes, %d verified, %d gap bytes, %d retransmitted, %d corrupt ranges [%s]\n",
			s.Stream, s.SenderPort, s.End, s.Verified, s.GapBytes, s.Retransmitted, len(s.Corrupt), strings.Join(flags, " "))
	}
	if len(r.Corruptions) > 0 {
		fmt.Fprintf(w, "corruptions on the wire:\n")
		for _, c := range r.Corruptions {
			fmt.Fprintf(w, "  stream %d offset %d length %d: expected %x seen %x (frame %d of %s, SPI 0x%08x seq %d, TCP checksum %s)\n",
				c.Stream, c.Offset, c.Length, []byte(c.Expected), []byte(c.Seen), c.Frame, filepath.Base(r.Captures[c.Capture].Path), c.SPI, c.ESPSeq, c.TCPChecksum)
			if c.CipherBlockText != "" {
				fmt.Fprintf(w, "    it decrypts from the ciphertext block %q: text, not a cipher's output\n", c.CipherBlockText)
			}
		}
		if r.CorruptionsDropped > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", r.CorruptionsDropped)
		}
	}
	for _, m := range r.Missing {
		fmt.Fprintf(w, "missing: %s\n", m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if args, err := TsharkArgs(keys); err == nil {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = a
			if strings.ContainsAny(a, " \"[") {
				q[i] = "'" + a + "'"
			}
		}
		fmt.Fprintf(w, "decrypt with tshark: tshark -r %s %s\n", r.Captures[0].Path, strings.Join(q, " "))
	}
}

func megabytes(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
