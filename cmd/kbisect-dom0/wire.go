package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kbisect/kbisect/netlab"
	"github.com/kbisect/kbisect/vm/xenctl"
	"github.com/vishvananda/netlink"
)

// setupWire creates the bridges and, for the nat topology, the masquerade
// between them.
func (c *controller) setupWire() error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	for _, b := range c.plan.Bridges {
		la := netlink.NewLinkAttrs()
		la.Name = b.Name
		if b.MTU > 0 {
			la.MTU = b.MTU
		}
		br := &netlink.Bridge{LinkAttrs: la}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge %s: %w", b.Name, err)
		}
		// No STP and no forwarding delay: the vifs forward at once.
		os.WriteFile("/sys/class/net/"+b.Name+"/bridge/forward_delay", []byte("0"), 0o644)
		os.WriteFile("/sys/class/net/"+b.Name+"/bridge/stp_state", []byte("0"), 0o644)
		if b.Addr != "" {
			addr, err := netlink.ParseAddr(b.Addr)
			if err != nil {
				return fmt.Errorf("bridge %s address %q: %w", b.Name, b.Addr, err)
			}
			if err := netlink.AddrAdd(br, addr); err != nil {
				return fmt.Errorf("bridge %s: add %s: %w", b.Name, b.Addr, err)
			}
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("bridge %s: up: %w", b.Name, err)
		}
	}
	// Bridged frames must not go through dom0's IP firewall.
	for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		os.WriteFile("/proc/sys/net/bridge/"+k, []byte("0"), 0o644)
	}
	if c.plan.Topology != xenctl.TopologyNAT {
		return nil
	}
	if len(c.plan.Bridges) != 2 {
		return fmt.Errorf("nat topology needs 2 bridges, plan has %d", len(c.plan.Bridges))
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("ip_forward: %w", err)
	}
	in, out := c.plan.Bridges[0].Name, c.plan.Bridges[1].Name
	rules := netlab.NATRuleset(in, out, nil)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

// hotplug is the vif hotplug script libxl runs (script= in the vif spec):
// "online" attaches the vif to the bridge named in xenstore and reports it
// connected; everything else has nothing to do.
func hotplug(action string) int {
	if action != "online" && action != "add" {
		return 0
	}
	xb := os.Getenv("XENBUS_PATH")
	vif := os.Getenv("vif")
	// netback names the interface vif<domid>.<n>; the scripts rename it to
	// the vifname the config asked for, which the captures look for.
	name := xsRead(xb + "/vifname")
	if vif == "" {
		vif = name
	}
	bridge := xsRead(xb + "/bridge")
	if err := attach(vif, name, bridge); err != nil {
		fmt.Fprintf(os.Stderr, "kbisect-dom0 hotplug: %v\n", err)
		exec.Command("xenstore-write", xb+"/hotplug-error", err.Error(), xb+"/hotplug-status", "error").Run()
		return 1
	}
	if b, err := exec.Command("xenstore-write", xb+"/hotplug-status", "connected").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "kbisect-dom0 hotplug: xenstore-write: %v: %s\n", err, b)
		return 1
	}
	return 0
}

func attach(vif, name, bridge string) error {
	if vif == "" || bridge == "" {
		return fmt.Errorf("vif %q or bridge %q unknown", vif, bridge)
	}
	l, err := netlink.LinkByName(vif)
	if err != nil {
		return fmt.Errorf("vif %s: %w", vif, err)
	}
	if name != "" && name != vif {
		if err := netlink.LinkSetName(l, name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", vif, name, err)
		}
		vif = name
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if mtu := br.Attrs().MTU; mtu > 0 {
		netlink.LinkSetMTU(l, mtu)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", vif, bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("up %s: %w", vif, err)
	}
	return nil
}

func xsRead(p string) string {
	b, err := exec.Command("xenstore-read", p).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
