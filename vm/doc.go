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
// Backends: QEMU is the only one; Config.Hypervisor selects it, and a Xen
// backend plugs in behind the same Guest by implementing the unexported
// backend and machine interfaces in guest.go.
package vm
