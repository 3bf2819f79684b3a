package vm

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Hypervisor names a backend that runs guests.
type Hypervisor string

// Hypervisors: QEMU here; Xen (xen.go) runs guests in pairs only, through
// StartXenPair.
const (
	// QEMU runs each guest as a qemu-system-x86_64 process (KVM or TCG).
	QEMU Hypervisor = "qemu"
)

// Accelerator choices for Config.Accel.
const (
	// AccelAuto uses KVM when it can run ordinary guests and TCG otherwise.
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// NetKind is the kind of host file behind a guest NIC.
type NetKind string

// Network backends a guest NIC can be attached to.
const (
	// NetDgram is one end of an AF_UNIX SOCK_DGRAM socketpair: each datagram
	// is one Ethernet frame (QEMU -netdev dgram, local.type=fd). The two ends
	// given to two guests make a wire that works whichever starts first.
	NetDgram NetKind = "dgram"
	// NetTap is an open /dev/net/tun file attached to a tap interface
	// (IFF_TAP|IFF_NO_PI), for instance one inside a netlab namespace.
	NetTap NetKind = "tap"
)

// Netdev is one guest network interface backed by an already-open host file.
type Netdev struct {
	Kind NetKind
	// File is passed to the hypervisor; the caller keeps ownership and may
	// close it once Start has returned.
	File *os.File
	// MAC is the guest's address; nil derives a stable locally administered
	// one from the guest name and the NIC's index.
	MAC net.HardwareAddr
	// Model is the QEMU NIC device; empty means virtio-net-pci.
	Model string
}

// QEMUOptions are the settings only the QEMU backend reads.
type QEMUOptions struct {
	// Binary is the QEMU executable; empty means qemu-system-x86_64 on PATH.
	Binary string
	// Machine is the -machine type; empty means "pc" (i440FX), which boots
	// every kernel and is faster than "q35" under TCG. (microvm is not
	// offered: under TCG it has no clock to calibrate the TSC against and
	// Debian's kernel hangs; it also finds PCIe and its UARTs only via ACPI.)
	Machine string
	// CPU is the -cpu model; empty means "max" under TCG (AES-NI, PCLMUL,
	// AVX2 for the guest's crypto; less the features an old release
	// cannot take, see releaseQuirks) and "host" under KVM.
	CPU string
	// Firmware is "qboot" (Debian's /usr/share/qemu/qboot.rom, a minimal
	// BIOS that jumps straight to -kernel), "seabios" (QEMU's default) or a
	// path to a ROM. Empty means qboot when it is installed.
	Firmware string
	// NoPVH boots the image as given. By default a bzImage whose vmlinux has
	// the PVH entry note is booted from its extracted vmlinux (cached), which
	// skips the in-guest decompression: about 2.5x faster under TCG.
	NoPVH bool
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
}

// Config describes one guest.
type Config struct {
	// Name identifies the guest in errors and logs ("a", "sender").
	Name string
	// Hypervisor selects the backend; empty means QEMU.
	Hypervisor Hypervisor
	// Kernel is a bzImage or an ELF vmlinux (see InspectKernel).
	Kernel string
	// Initrd is the initramfs (cpio, possibly several concatenated).
	Initrd string
	// Append is added to the kernel command line after the options the
	// backend needs (console=ttyS0, panic=-1, ...); later options win.
	Append string
	// MemoryMB is the guest RAM; 0 means 512.
	MemoryMB int
	// CPUs is the number of vCPUs; 0 means 1.
	CPUs int
	// Accel is AccelAuto (default), AccelKVM or AccelTCG.
	Accel string
	// ConsoleLog, when set, is the file the serial console (ttyS0) is
	// written to.
	ConsoleLog string
	// ConsoleOutput, when set, also receives the console as it arrives.
	ConsoleOutput io.Writer
	// ConsoleInput, when set, is copied to the console (for an interactive
	// shell on the guest).
	ConsoleInput io.Reader
	// Netdevs are the guest's NICs, eth0 first.
	Netdevs []Netdev
	// Timeout ends the guest (killing it) when it runs longer; 0 means no
	// limit beyond the context's.
	Timeout time.Duration
	// StopGrace is how long a graceful stop waits before SIGKILL; 0 means 3s.
	StopGrace time.Duration
	// ExitGrace is how long the hypervisor may take to exit once the guest
	// has ended itself (its kernel said it restarts, powers off or halts,
	// or QEMU reported the guest's reset or shutdown); then it is stopped
	// and the guest's end counts as clean. 0 means 10s.
	ExitGrace time.Duration
	// Logf receives the few things worth telling a user (the TCG fallback,
	// a PVH boot from an extracted vmlinux, a forced kill); nil discards them.
	Logf func(format string, args ...any)
	// QEMU holds QEMU-only settings.
	QEMU QEMUOptions
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = "guest"
	}
	if c.Hypervisor == "" {
		c.Hypervisor = QEMU
	}
	if c.Kernel == "" {
		return c, fmt.Errorf("guest %s: no kernel image given", c.Name)
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 512
	}
	if c.MemoryMB < 64 {
		return c, fmt.Errorf("guest %s: %d MB of memory is too little for a kernel and its initramfs: give at least 64", c.Name, c.MemoryMB)
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.CPUs < 0 {
		return c, fmt.Errorf("guest %s: %d vCPUs: give a positive number", c.Name, c.CPUs)
	}
	switch c.Accel {
	case "":
		c.Accel = AccelAuto
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return c, fmt.Errorf("guest %s: accelerator %q: use auto, kvm or tcg", c.Name, c.Accel)
	}
	if c.StopGrace == 0 {
		c.StopGrace = 3 * time.Second
	}
	if c.ExitGrace == 0 {
		c.ExitGrace = 10 * time.Second
	}
	c.Netdevs = append([]Netdev(nil), c.Netdevs...)
	for i, nd := range c.Netdevs {
		if nd.Kind != NetDgram && nd.Kind != NetTap {
			return c, fmt.Errorf("guest %s: NIC %d: kind %q: use %q or %q", c.Name, i, nd.Kind, NetDgram, NetTap)
		}
		if nd.File == nil {
			return c, fmt.Errorf("guest %s: NIC %d (%s) has no open file", c.Name, i, nd.Kind)
		}
		if nd.MAC == nil {
			c.Netdevs[i].MAC = defaultMAC(c.Name, i)
		} else if len(nd.MAC) != 6 {
			return c, fmt.Errorf("guest %s: NIC %d: MAC %v is not 6 bytes", c.Name, i, nd.MAC)
		}
	}
	return c, nil
}

// defaultMAC derives a stable locally administered unicast address (QEMU's
// 52:54:00 prefix) from the guest name and the NIC index.
func defaultMAC(name string, i int) net.HardwareAddr {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, i)))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}
