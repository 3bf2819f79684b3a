package vm

import "github.com/kbisect/kbisect/kconfigs"

// tcgCPUQuirks are the features of QEMU's "max" CPU model (TCG) a guest
// kernel of the releases named must not see, with the release that showed
// it: version knowledge as a table.
var tcgCPUQuirks = []struct {
	From, Until kconfigs.Version // From <= release < Until
	Features    string           // appended to "max"
	Why         string
}{{
	From: kconfigs.V(3, 7, 0), Until: kconfigs.V(3, 14, 0), Features: ",-smap",
	// SMAP came in 3.7; with it on, 3.7.2's agent got EFAULT from its
	// first sendto() and 3.8.0's init died of SIGSEGV at its first signal
	// (exit code 0xb, no oops): user memory touched without STAC. 3.14.5
	// runs with it. 3.9 to 3.13 are untested, so it stays off there.
	Why: "user accesses without STAC fault under SMAP (3.7.2: sendto EFAULT; 3.8.0: init killed by SIGSEGV)",
}}

// TCGCPU is the CPU model of a TCG guest running Linux release (as
// InspectKernel gives it; "" when unknown): "max" less the quirks of its
// release. Guests elsewhere (a LAVA lab's QEMU) are given the same.
func TCGCPU(release string) string {
	cpu := "max"
	v, err := kconfigs.ParseVersion(release)
	if err != nil {
		return cpu
	}
	for _, q := range tcgCPUQuirks {
		if !v.Less(q.From) && v.Less(q.Until) {
			cpu += q.Features
		}
	}
	return cpu
}
