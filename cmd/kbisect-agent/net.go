package main

import (
	"fmt"
	"net"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/vishvananda/netlink"
)

// setupNetwork brings up lo and the guest's one network interface with the
// address, MTU and default route the host chose.
func setupNetwork(p *proto.Params) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	if p.Addr == "" {
		return nil
	}
	link, err := waitForNIC(5 * time.Second)
	if err != nil {
		return err
	}
	if p.MAC != "" {
		hw, err := net.ParseMAC(p.MAC)
		if err != nil {
			return fmt.Errorf("MAC %q: %w", p.MAC, err)
		}
		if err := netlink.LinkSetHardwareAddr(link, hw); err != nil {
			return fmt.Errorf("set MAC %s on %s: %w", p.MAC, link.Attrs().Name, err)
		}
	}
	if p.MTU > 0 {
		if err := netlink.LinkSetMTU(link, p.MTU); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", p.MTU, link.Attrs().Name, err)
		}
	}
	addr, err := netlink.ParseAddr(p.Addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", p.Addr, err)
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", p.Addr, link.Attrs().Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", link.Attrs().Name, err)
	}
	if p.Gateway != "" {
		gw := net.ParseIP(p.Gateway)
		if gw == nil {
			return fmt.Errorf("gateway %q is not an IP address", p.Gateway)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %s: %w", p.Gateway, err)
		}
	}
	return nil
}

// waitForNIC returns the first Ethernet interface; drivers loaded as modules
// may register it a moment after the module loads.
func waitForNIC(timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" && len(l.Attrs().HardwareAddr) == 6 {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no network interface after %v: is the NIC driver (virtio_net, xen-netfront) in the kernel or its modules?", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
