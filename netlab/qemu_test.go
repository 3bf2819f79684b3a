//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestQEMUGuest hands each topology's guest-0 file to a real QEMU, the way
// the vm package does, and boots the host's Debian kernel with its own
// initramfs, told to mount an NFS root from guest B's view of the peer. The
// test plays guest B: the guest kernel's first packets to the NFS server
// must reach it (through the NAT, from the NAT's outside address).
func TestQEMUGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a kernel under TCG")
	}
	qemu := testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	kernel, _ := testenv.DebianKernel(t)
	initrd := strings.Replace(kernel, "vmlinuz-", "initrd.img-", 1)
	if _, err := os.Stat(initrd); err != nil {
		testenv.Missing(t, "no initramfs for "+kernel+": apt-get install linux-image-amd64 initramfs-tools")
	}
	tests := []struct {
		topo, netdev string
		wantSrc      string // source address of the guest's packets at B
	}{
		{TopologyDirect, "dgram,id=n0,local.type=fd,local.str=3", "198.18.0.1"},
		{TopologyNAT, "tap,id=n0,fd=3", "198.19.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.topo, func(t *testing.T) {
			if tc.topo == TopologyNAT {
				needRoot(t)
			}
			l := newTestLab(t, Options{Topology: tc.topo, CaptureDir: t.TempDir()})
			g := l.Endpoints()
			peer := startFakeGuest(t, g[1])
			ip, ipnet, _ := net.ParseCIDR(g[0].Addr)
			ipArg := fmt.Sprintf("ip=%s::%s:%s::eth0:off", ip, g[0].Gateway, net.IP(ipnet.Mask))
			console := filepath.Join(t.TempDir(), "console.log")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "pc", "-m", "512M",
				"-nodefaults", "-display", "none", "-no-reboot", "-serial", "file:"+console,
				"-kernel", kernel, "-initrd", initrd,
				"-append", "console=ttyS0 net.ifnames=0 panic=-1 boot=nfs nfsroot="+g[0].PeerView+":/kbisect "+ipArg,
				"-netdev", tc.netdev, "-device", "virtio-net-pci,netdev=n0,mac="+g[0].MAC)
			cmd.ExtraFiles = []*os.File{g[0].File}
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
			}()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			var got []byte
		wait:
			for {
				select {
				case f := <-peer.frames:
					p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
					if ip4, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip4.DstIP.Equal(net.ParseIP(strings.Split(g[1].Addr, "/")[0])) {
						got = f
						break wait
					}
				case err := <-exited:
					b, _ := os.ReadFile(console)
					t.Fatalf("QEMU exited (%v) before the guest sent anything: %s\n%s", err, out, tail(b))
				case <-ctx.Done():
					b, _ := os.ReadFile(console)
					t.Fatalf("no packet from the guest: %s\n%s", out, tail(b))
				}
			}
			p := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default)
			ip4 := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if tl := p.TransportLayer(); tl != nil {
				t.Logf("guest B got %v %s:%v -> %s:%v", tl.LayerType(), ip4.SrcIP, tl.TransportFlow().Src(), ip4.DstIP, tl.TransportFlow().Dst())
			}
			if ip4.SrcIP.String() != tc.wantSrc {
				t.Errorf("guest B got a packet from %s, want %s", ip4.SrcIP, tc.wantSrc)
			}
			cmd.Process.Kill()
			<-exited
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// The first capture (the wire, or the NAT's inside) has the
			// guest's own frames.
			n := 0
			for _, r := range readPcap(t, l.Captures()[0]) {
				if net.HardwareAddr(r.data[6:12]).String() == g[0].MAC {
					n++
				}
			}
			if n == 0 {
				t.Error("the capture has no frame from the guest")
			}
		})
	}
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
