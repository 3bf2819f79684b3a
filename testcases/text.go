package testcases

import (
	"fmt"
	"io"

	"github.com/kbisect/kbisect/testcases/esp"
)

// WriteText writes the report for people: the verdict, the traffic, the
// wire and where the evidence is.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
	fmt.Fprintf(w, "reason:  %s\n", r.Reason)
	if r.BytesVerified > 0 {
		fmt.Fprintf(w, "traffic: %d bytes verified, %.1f Mbit/s, boot %.2fs (guest), %.1fs (wall)\n", r.BytesVerified, r.ThroughputMbit, r.BootSeconds, r.BootWallSeconds)
	}
	if r.Wire.Verdict != "" {
		fmt.Fprintf(w, "wire:    %s %s\n", r.Wire.Verdict, r.Wire.Detail)
	}
	if r.Wire.ESPPerSecond > 0 {
		fmt.Fprintf(w, "esp:     %s\n", esp.DescribeMix(r.Wire.ESPPerSecond, r.Wire.Sizes, r.Wire.DistinctSizes))
	}
	for _, g := range r.Guests {
		fmt.Fprintf(w, "%-8s %s (%s): console %s\n", g.Role+":", g.KernelRelease, g.Outcome, g.Console)
	}
	for _, p := range r.Pcaps {
		fmt.Fprintf(w, "pcap:    %s\n", p)
	}
	if r.ESPSA != "" {
		fmt.Fprintf(w, "esp_sa:  %s (Wireshark: Protocols > ESP > SAs)\n", r.ESPSA)
	}
}
