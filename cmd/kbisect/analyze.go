package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
)

func init() {
	var (
		pcaps    []string
		keysPath string
		recvPath string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "analyze --pcap FILE [--pcap FILE2] [--keys KEYS] [--receiver-result R.json] [--json]",
		Short: "Decrypt a run's ESP capture and say whether the wire carried the corruption",
		Long: `analyze decrypts the NAT-T ESP traffic of a capture with the run's keys (the
.keys.json file kbisect run writes next to its pcap), checks every byte of
every test stream against the expected pattern, and prints the wire verdict:

  clean    every stream byte was on the wire, authenticated and right
  encap    an authenticated ESP packet carried wrong bytes: the sender's
           output path corrupted them
  nat      ESP packets changed between the two capture points
  unknown  the capture is not complete enough to say (it says what is missing)

Give one capture, or two taken on either side of a NAT (the sender's side
first). With --receiver-result (the receiving agent's result JSON, or a
kbisect run JSON), the receiver's corruptions are placed too: encap when the
wire already carried them, decap when the wire carried the right bytes there
(the receiver's input path corrupted them).

The esp_sa file next to the capture opens it decrypted in Wireshark: copy it
to ~/.config/wireshark/esp_sa, or run tshark with the options printed below.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(pcaps) == 0 || len(pcaps) > 2 {
				return fmt.Errorf("give one capture, or two (sender side, receiver side) with --pcap; got %d", len(pcaps))
			}
			for _, p := range pcaps {
				if _, err := os.Stat(p); err != nil {
					return fmt.Errorf("capture: %w", err)
				}
			}
			if keysPath == "" {
				keysPath = esp.KeysPathFor(pcaps[0])
				if _, err := os.Stat(keysPath); err != nil {
					return fmt.Errorf("no keys given and no %s next to the capture: pass the run's keys with --keys", filepath.Base(keysPath))
				}
			}
			keys, err := esp.LoadKeys(keysPath)
			if err != nil {
				return err
			}
			var recv []proto.Corruption
			if recvPath != "" {
				if recv, err = loadReceiverCorruptions(recvPath); err != nil {
					return err
				}
			}
			rep, err := esp.Analyze(cmd.Context(), esp.AnalyzeOptions{Pcaps: pcaps, Keys: keys})
			if err != nil {
				return err
			}
			out := analyzeOutput{Report: rep}
			if recvPath != "" {
				out.CaptureWire = rep.Wire
				out.ReceiverCorruptions = len(recv)
				rep.Wire, rep.Reason = esp.Explain(rep, recv)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			printAnalysis(cmd.OutOrStdout(), out, keys)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&pcaps, "pcap", nil, "capture file (pcap or pcapng); give twice for both sides of a NAT, sender side first")
	cmd.Flags().StringVar(&keysPath, "keys", "", "the run's keys file (default: the .keys.json next to the first capture)")
	cmd.Flags().StringVar(&recvPath, "receiver-result", "", "the receiving agent's result JSON (or kbisect run's JSON), to tell decap from encap")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	rootCmd.AddCommand(cmd)
}

// analyzeOutput is what kbisect analyze prints with --json.
type analyzeOutput struct {
	*esp.Report
	// CaptureWire is the capture's own verdict when the receiver's
	// corruptions changed it.
	CaptureWire         string `json:"capture_wire,omitempty"`
	ReceiverCorruptions int    `json:"receiver_corruptions,omitempty"`
}

// loadReceiverCorruptions reads the corruptions the receiver saw from a
// proto.Result, a kbisect run JSON (both have "corruptions"), or a bare
// array of corruptions.
func loadReceiverCorruptions(path string) ([]proto.Corruption, error) {
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

func printAnalysis(w io.Writer, out analyzeOutput, keys *esp.Keys) {
	r := out.Report
	fmt.Fprintf(w, "wire: %s\n", r.Wire)
	fmt.Fprintf(w, "reason: %s\n", r.Reason)
	if out.CaptureWire != "" && out.CaptureWire != r.Wire {
		fmt.Fprintf(w, "capture alone: %s (%d receiver corruptions placed)\n", out.CaptureWire, out.ReceiverCorruptions)
	}
	fmt.Fprintf(w, "verified: %s on the wire, %d packets, %d ESP, %d ICV failures, %d bad TCP checksums\n",
		mb(r.BytesVerified), r.Packets, r.ESPPackets, r.ICVFailures, r.ChecksumFailures)
	for _, c := range r.Captures {
		fmt.Fprintf(w, "capture %s (%s side, %s): %d packets, %d ESP, %d ICV failures, %d TCP segments, %d bad checksums, %s verified\n",
			c.Path, c.Side, c.LinkType, c.Packets, c.ESPPackets, c.ICVFailures, c.TCPSegments, c.ChecksumFailures, mb(c.BytesVerified))
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
	if args, err := esp.TsharkArgs(keys); err == nil {
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

func mb(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
