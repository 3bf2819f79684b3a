// Package xenctl is the contract between kbisect's Xen backend (package vm)
// and the dom0 controller (cmd/kbisect-dom0): the Plan that says which domUs
// to create on which wire, and the line protocol on dom0's console that
// carries the domUs' consoles and lifecycle back to the host.
//
// The controller writes every line it relays as
//
//	KBXEN <guest> <kind> <text>
//
// where guest is a domU name from the Plan (or "-" for the controller
// itself) and kind is one of the Kind constants. Anything else on dom0's
// console (Xen's and dom0's kernel messages) is not part of the protocol.
// The host sends commands the other way, one per line ("destroy <guest>").
package xenctl

import (
	"fmt"
	"strings"
)

// PlanPath is where the controller finds the Plan in dom0's initramfs.
const PlanPath = "/kbisect/dom0.json"

// CaptureStatsName is the file in the share where the controller writes its
// CaptureStats once every capture is written out: absent, the captures
// did not end cleanly.
const CaptureStatsName = "capture-stats.json"

// CaptureStats counts, per vif, the frames captured and those that crossed
// the vif but are not in its pcap.
type CaptureStats struct {
	Vifs []VifCapture `json:"vifs"`
}

// VifCapture is one vif's capture.
type VifCapture struct {
	Vif    string `json:"vif"`
	Pcap   string `json:"pcap"`
	Frames int    `json:"frames"`
	// SocketDrops are frames the packet socket dropped (its receive ring
	// full; -1: unknown).
	SocketDrops int `json:"socket_drops"`
}

// Lossless reports whether every vif's capture holds every frame that
// crossed it.
func (s *CaptureStats) Lossless() bool {
	for _, v := range s.Vifs {
		if v.SocketDrops != 0 {
			return false
		}
	}
	return len(s.Vifs) > 0
}

// Prefix starts every protocol line.
const Prefix = "KBXEN "

// Kinds of protocol lines.
const (
	// KindConsole is one line of a domU's console.
	KindConsole = "C"
	// KindStarted says the domU was created and runs (text: its domid).
	KindStarted = "S"
	// KindExit says the domU is gone (text: how, e.g. "exit 0: Domain 1
	// has shut down, reason code 1").
	KindExit = "X"
	// KindError says the domU could not be created or managed (text: xl's
	// message).
	KindError = "E"
	// KindLog is a message from the controller (guest "-").
	KindLog = "L"
	// KindReady says the controller set dom0 up and is creating the domUs.
	KindReady = "R"
	// KindDone says every domU is gone and dom0 is about to power off.
	KindDone = "D"
)

// CmdDestroy asks the controller to destroy a domU: "destroy <guest>".
const CmdDestroy = "destroy"

// Controller is the guest name of the controller's own lines.
const Controller = "-"

// Wire topologies, as in package netlab.
const (
	TopologyDirect = "direct"
	TopologyNAT    = "nat"
)

// Plan is what the controller does.
type Plan struct {
	// Topology is TopologyDirect (one bridge) or TopologyNAT (guest 0 behind
	// a masquerading dom0 between two bridges).
	Topology string `json:"topology"`
	// Modules are the dom0 kernel modules to load, in order.
	Modules []string `json:"modules"`
	// DomUs are the guests, guest 0 first.
	DomUs []DomU `json:"domus"`
	// Capture records the vifs of the domUs with a DomU.Pcap in the share.
	Capture bool `json:"capture,omitempty"`
	// ShareTag is the 9p mount tag of a host directory dom0 mounts at
	// /kbisect/out (virtio-9p), where the pcaps go; empty: none.
	ShareTag string `json:"share_tag,omitempty"`
	// Bridges are the dom0 bridges with dom0's own address on each (CIDR,
	// empty for none), in the order of DomU.Bridge indexes.
	Bridges []Bridge `json:"bridges"`
}

// Bridge is one dom0 bridge.
type Bridge struct {
	Name string `json:"name"`
	// Addr is dom0's address on the bridge (the NAT's side), or empty.
	Addr string `json:"addr,omitempty"`
	// MTU of the bridge and its vifs; 0 keeps the default.
	MTU int `json:"mtu,omitempty"`
}

// DomU is one guest.
type DomU struct {
	// Name is the domain name and the protocol's guest tag.
	Name string `json:"name"`
	// Type is "pv", "pvh" or "hvm".
	Type string `json:"type"`
	// Kernel and Ramdisk are paths inside dom0.
	Kernel  string `json:"kernel"`
	Ramdisk string `json:"ramdisk,omitempty"`
	// Cmdline is the domU kernel's command line.
	Cmdline  string `json:"cmdline"`
	MemoryMB int    `json:"memory_mb"`
	VCPUs    int    `json:"vcpus"`
	// CPUs is the domU's hard affinity (xl cpus=, e.g. "1"); empty lets
	// Xen's scheduler choose.
	CPUs string `json:"cpus,omitempty"`
	// MAC of the domU's netfront NIC.
	MAC string `json:"mac"`
	// Bridge is the name of the bridge its vif joins.
	Bridge string `json:"bridge"`
	// Vif is the name of the backend interface in dom0.
	Vif string `json:"vif"`
	// Pcap, when set with Plan.Capture, is the file in the share that
	// records the vif.
	Pcap string `json:"pcap,omitempty"`
}

// Line is one protocol line.
type Line struct {
	Guest string
	Kind  string
	Text  string
}

// Format returns l as a protocol line, without the newline.
func (l Line) Format() string {
	g := l.Guest
	if g == "" {
		g = Controller
	}
	return fmt.Sprintf("%s%s %s %s", Prefix, g, l.Kind, l.Text)
}

// Parse finds a protocol line in s (which may carry a carriage return or
// other console noise before the prefix).
func Parse(s string) (Line, bool) {
	i := strings.Index(s, Prefix)
	if i < 0 {
		return Line{}, false
	}
	f := strings.SplitN(strings.TrimRight(s[i+len(Prefix):], "\r\n"), " ", 3)
	if len(f) < 2 || f[0] == "" || f[1] == "" {
		return Line{}, false
	}
	l := Line{Guest: f[0], Kind: f[1]}
	if len(f) == 3 {
		l.Text = f[2]
	}
	return l, true
}
