package vm

import "github.com/kbisect/kbisect/kconfigs"

// releaseQuirks are what a QEMU guest running a kernel of the releases
// named needs from the machine, with the releases that showed it: version
// knowledge as a table. Each is a no-op for a release that lacks the
// feature turned off.
var releaseQuirks = []releaseQuirk{{
	Versions: kconfigs.Range{From: kconfigs.V(3, 0, 0), Until: kconfigs.V(3, 2, 0)}, NIC: ",event_idx=off",
	// Virtio's event index (VIRTIO_RING_F_EVENT_IDX) came in 3.0; with
	// it on, 3.0.0's virtio-net stopped moving (the sender's write timed
	// out after 3 to 194 MB, four runs of four) and ran clean with it off
	// (three runs of 30 s, 59-68 Mbit/s). 3.1.0 ran clean twice with it,
	// but its virtio code differs from 3.0's only in statistics, so it is
	// off there too; 3.2.4 and later run with it.
	Why: "virtio-net without its event index (3.0.0's traffic stalls with it)",
}, {
	Versions: kconfigs.Range{From: kconfigs.V(3, 7, 0), Until: kconfigs.V(3, 14, 0)}, CPU: ",-smap",
	// SMAP came in 3.7; with it on, 3.7.2's agent got EFAULT from its
	// first sendto() and 3.8.0's init died of SIGSEGV at its first signal
	// (exit code 0xb, no oops): user memory touched without STAC. Both
	// run clean without it. 3.14.5 runs with it; 3.9 to 3.13 are
	// untested, so it stays off there.
	Why: "a CPU without SMAP (3.7.2's sendto got EFAULT and 3.8.0's init SIGSEGV under it)",
}, {
	Versions: kconfigs.Range{From: kconfigs.V(4, 11, 0), Until: kconfigs.V(5, 0, 0)}, NoPVH: true,
	// From 4.11 to 4.20 the PVH entry note is CONFIG_XEN_PVH's: its entry
	// code sets up Xen's hypercall page and assumes Xen. Booted from it,
	// 4.14.5 printed nothing for 3m20s under QEMU; its bzImage boots. A
	// PVH entry that runs without Xen (CONFIG_PVH) came in 5.0.
	Why: "a bzImage boot (its PVH entry, CONFIG_XEN_PVH before 5.0, runs only under Xen)",
}}

// releaseQuirk is one row of releaseQuirks.
type releaseQuirk struct {
	Versions kconfigs.Range
	// CPU is appended to the TCG CPU model "max"; NIC to each virtio-net
	// device's properties.
	CPU, NIC string
	// NoPVH: QEMU cannot boot the kernel through its PVH entry note.
	NoPVH bool
	Why   string
}

// quirksOf returns the quirks of Linux release ("" or unreadable: none).
func quirksOf(release string) []releaseQuirk {
	v, err := kconfigs.ParseVersion(release)
	if err != nil {
		return nil
	}
	var out []releaseQuirk
	for _, q := range releaseQuirks {
		if q.Versions.Contains(v) {
			out = append(out, q)
		}
	}
	return out
}

// QEMUBootsPVH reports whether QEMU can boot the kernel ki describes
// directly through its PVH entry note: it has the note, and its release
// is not one whose note only Xen can use.
func QEMUBootsPVH(ki *KernelInfo) bool {
	if !ki.PVH {
		return false
	}
	for _, q := range quirksOf(ki.Release) {
		if q.NoPVH {
			return false
		}
	}
	return true
}

// TCGCPU is the CPU model of a TCG guest running Linux release (as
// InspectKernel gives it; "" when unknown): "max" less the quirks of its
// release. Guests elsewhere (a LAVA lab's QEMU) are given the same.
func TCGCPU(release string) string {
	cpu := "max"
	for _, q := range quirksOf(release) {
		cpu += q.CPU
	}
	return cpu
}
