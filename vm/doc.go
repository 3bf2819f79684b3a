// Package vm runs kbisect's guests: one virtual machine per Guest (QEMU with
// KVM or, where KVM cannot run ordinary guests, TCG), its serial console
// saved to a file, the agent's result channel on the second serial port read
// live, QMP through go-qemu (graceful stop, status, pvpanic's
// GUEST_PANICKED), hard timeouts, and an Outcome that says whether the guest
// ended cleanly, panicked, timed out, was killed or the hypervisor failed.
// A Pair runs two guests that live and die together.
//
// The package knows kernels only as far as booting goes (InspectKernel,
// PVH boot of a vmlinux); it does not parse what the agent writes.
//
// Backends: QEMU runs one process per guest (Start, StartPair). Xen runs a
// pair of domUs with netfront in a Xen host nested under QEMU TCG
// (StartXenPair, XenOptions): each domU is an ordinary Guest behind the
// unexported machine interface, its console and agent lines relayed by the
// dom0 controller (cmd/kbisect-dom0, protocol in package vm/xenctl).
package vm
