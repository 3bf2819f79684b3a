//go:build linux

package netlab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// needRoot skips tests of the nat topology where it cannot run.
func needRoot(t testing.TB) {
	t.Helper()
	testenv.NeedNft(t)
}

// fakeGuest plays a guest on a tap: it answers ARP requests for its
// address, hands ARP replies and other frames to the test, and counts what
// it writes.
type fakeGuest struct {
	t         testing.TB
	f         *os.File
	mac, ip   string
	frames    chan []byte
	arps      chan *layers.ARP
	sent      atomic.Uint64
	received  atomic.Uint64 // non-ARP frames
	countOnly atomic.Bool   // benchmarks: count frames, do not decode
}

func startFakeGuest(t testing.TB, g Endpoint) *fakeGuest {
	ip, _, err := net.ParseCIDR(g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	fg := &fakeGuest{t: t, f: g.File, mac: g.MAC, ip: ip.String(), frames: make(chan []byte, 64), arps: make(chan *layers.ARP, 8)}
	go fg.run()
	return fg
}

func (fg *fakeGuest) run() {
	buf := make([]byte, maxFrame)
	for {
		n, err := fg.f.Read(buf)
		if err != nil {
			return // the Lab closed the tap
		}
		if fg.countOnly.Load() {
			fg.received.Add(1)
			continue
		}
		frame := append([]byte(nil), buf[:n]...)
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
			switch {
			case arp.Operation == layers.ARPRequest && net.IP(arp.DstProtAddress).String() == fg.ip:
				fg.write(arpFrame(fg.t, layers.ARPReply, fg.mac, net.HardwareAddr(arp.SourceHwAddress).String(),
					fg.ip, net.IP(arp.SourceProtAddress).String()))
			case arp.Operation == layers.ARPReply:
				fg.arps <- arp
			}
			continue
		}
		fg.received.Add(1)
		select {
		case fg.frames <- frame:
		default:
		}
	}
}

func (fg *fakeGuest) write(frame []byte) {
	if _, err := fg.f.Write(frame); err != nil {
		fg.t.Errorf("guest %s: write: %v", fg.ip, err)
		return
	}
	fg.sent.Add(1)
}

// resolve asks for ip's MAC as the guest's kernel would.
func (fg *fakeGuest) resolve(ip string) string {
	fg.write(arpFrame(fg.t, layers.ARPRequest, fg.mac, "ff:ff:ff:ff:ff:ff", fg.ip, ip))
	select {
	case arp := <-fg.arps:
		if got := net.IP(arp.SourceProtAddress).String(); got != ip {
			fg.t.Fatalf("ARP reply for %s, want %s", got, ip)
		}
		return net.HardwareAddr(arp.SourceHwAddress).String()
	case <-time.After(5 * time.Second):
		fg.t.Fatalf("no ARP reply for %s", ip)
	}
	return ""
}

// next returns the next non-ARP frame, or nil after d.
func (fg *fakeGuest) next(d time.Duration) []byte {
	select {
	case f := <-fg.frames:
		return f
	case <-time.After(d):
		return nil
	}
}

// udpOf decodes an IPv4/UDP frame.
func udpOf(t testing.TB, frame []byte) (eth *layers.Ethernet, ip *layers.IPv4, udp *layers.UDP) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ = p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil {
		t.Fatalf("not an IPv4/UDP frame: %s", describe(frame))
	}
	return eth, ip, udp
}

func TestNAT(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, Options{Topology: TopologyNAT, CaptureDir: t.TempDir()})
	g := l.Endpoints()
	for i, want := range []Endpoint{
		{Kind: KindTap, MAC: macA, Addr: "198.18.1.2/24", Gateway: "198.18.1.1", PeerView: "198.19.0.2", MTU: 1500},
		{Kind: KindTap, MAC: macB, Addr: "198.19.0.2/24", PeerView: "198.19.0.1", MTU: 1500},
	} {
		got := g[i]
		got.File = nil
		if got != want {
			t.Errorf("guest %d = %+v, want %+v", i, got, want)
		}
	}
	a, b := startFakeGuest(t, g[0]), startFakeGuest(t, g[1])
	gwMAC := a.resolve("198.18.1.1")
	if gwMAC != natMACInside {
		t.Errorf("gateway MAC %s, want %s", gwMAC, natMACInside)
	}

	// A sends from three source ports to B's 4500, as NAT-T would.
	type flow struct {
		sport, mapped uint16
		sent, got     []byte // as A sent it, as B got it
		reply, back   []byte // as B sent the answer, as A got it
	}
	var flows []*flow
	for _, sport := range []uint16{4500, 4501, 4502} {
		fl := &flow{sport: sport}
		fl.sent = udpFrame(t, macA, gwMAC, "198.18.1.2", "198.19.0.2", sport, 4500, []byte("ping from A port "+string(rune('0'+sport%10))))
		a.write(fl.sent)
		fl.got = b.next(5 * time.Second)
		if fl.got == nil {
			t.Fatalf("B got nothing from A's port %d", sport)
		}
		eth, ip, udp := udpOf(t, fl.got)
		if eth.SrcMAC.String() != natMACOutside || eth.DstMAC.String() != macB {
			t.Errorf("B got %s -> %s, want %s -> %s", eth.SrcMAC, eth.DstMAC, natMACOutside, macB)
		}
		if ip.SrcIP.String() != "198.19.0.1" || ip.DstIP.String() != "198.19.0.2" || udp.DstPort != 4500 {
			t.Errorf("B got %s:%d -> %s:%d, want 198.19.0.1:* -> 198.19.0.2:4500", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort)
		}
		if !bytes.Equal(udp.Payload, fl.sent[ethHeaderLen+28:]) {
			t.Errorf("payload changed through the NAT")
		}
		if ok, err := udpChecksumOK(fl.got); !ok {
			t.Errorf("UDP checksum wrong after NAT (%v)", err)
		}
		fl.mapped = uint16(udp.SrcPort)
		flows = append(flows, fl)
	}
	kept, seen := 0, map[uint16]bool{}
	for _, fl := range flows {
		if fl.mapped == fl.sport {
			kept++
		}
		if seen[fl.mapped] {
			t.Errorf("two flows share outside port %d", fl.mapped)
		}
		seen[fl.mapped] = true
	}
	if kept == len(flows) {
		t.Errorf("no source port was rewritten: masquerade is not randomising")
	}

	// B answers each flow at the NAT's address; A gets it back de-NATed.
	for _, fl := range flows {
		natMAC := net.HardwareAddr(fl.got[6:12]).String()
		fl.reply = udpFrame(t, macB, natMAC, "198.19.0.2", "198.19.0.1", 4500, fl.mapped, []byte("pong"))
		b.write(fl.reply)
		fl.back = a.next(5 * time.Second)
		if fl.back == nil {
			t.Fatalf("A got no reply for port %d (outside %d)", fl.sport, fl.mapped)
		}
		_, ip, udp := udpOf(t, fl.back)
		if ip.SrcIP.String() != "198.19.0.2" || udp.SrcPort != 4500 || ip.DstIP.String() != "198.18.1.2" || uint16(udp.DstPort) != fl.sport {
			t.Errorf("A got %s:%d -> %s:%d, want 198.19.0.2:4500 -> 198.18.1.2:%d", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort, fl.sport)
		}
		if ok, err := udpChecksumOK(fl.back); !ok {
			t.Errorf("UDP checksum wrong after de-NAT (%v)", err)
		}
	}

	// The outside cannot open a flow: B's packet to an unmapped port never
	// reaches A, and the NAT itself says port unreachable.
	unmapped := uint16(1)
	for seen[unmapped] {
		unmapped++
	}
	natMAC := net.HardwareAddr(flows[0].got[6:12]).String()
	b.write(udpFrame(t, macB, natMAC, "198.19.0.2", "198.19.0.1", 4500, unmapped, []byte("unsolicited")))
	if f := b.next(5 * time.Second); f == nil {
		t.Error("B got no answer to an unsolicited packet")
	} else if p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default); p.Layer(layers.LayerTypeICMPv4) == nil {
		t.Errorf("B got %s, want ICMP port unreachable", describe(f))
	}
	if f := a.next(300 * time.Millisecond); f != nil {
		t.Errorf("an unsolicited packet from outside reached A: %s", describe(f))
	}

	// The NAT's own table says the same as the packets.
	ms, err := l.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range flows {
		want := Mapping{Proto: 17, Inside: netip.MustParseAddrPort(fmt.Sprintf("198.18.1.2:%d", fl.sport)),
			Outside: netip.MustParseAddrPort(fmt.Sprintf("198.19.0.1:%d", fl.mapped)), Peer: netip.MustParseAddrPort("198.19.0.2:4500")}
		if !slices.Contains(ms, want) {
			t.Errorf("mappings %v lack %v", ms, want)
		}
	}

	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if after, err := l.Mappings(); err != nil || len(after) < len(flows) {
		t.Errorf("mappings after Close: %v, %v", after, err)
	}
	final, _ := l.Stats()
	if final.AtoB.Frames < st.AtoB.Frames || final.AtoB.Frames != a.sent.Load() || final.BtoA.Frames != b.sent.Load() {
		t.Errorf("stats %+v: want %d frames A->B and %d B->A", final, a.sent.Load(), b.sent.Load())
	}
	if final.CaptureDrops != 0 || final.Dropped != 0 || final.Faults != 0 {
		t.Errorf("stats %+v: want no drops and no faults", final)
	}

	caps := l.Captures()
	if len(caps) != 2 {
		t.Fatalf("captures %v, want inside and outside", caps)
	}
	inside, outside := readPcap(t, caps[0]), readPcap(t, caps[1])
	for _, fl := range flows {
		for _, c := range []struct {
			name  string
			recs  []pcapRecord
			frame []byte
		}{
			{"inside: A's packet", inside, fl.sent},
			{"outside: A's packet after NAT", outside, fl.got},
			{"outside: B's reply", outside, fl.reply},
			{"inside: B's reply after de-NAT", inside, fl.back},
		} {
			if findFrame(c.recs, c.frame) < 0 {
				t.Errorf("port %d: %s is not in the capture", fl.sport, c.name)
			}
		}
		// The inside sees A's packet before the outside sees it translated.
		if i, o := findFrame(inside, fl.sent), findFrame(outside, fl.got); i >= 0 && o >= 0 && outside[o].ci.Timestamp.Before(inside[i].ci.Timestamp) {
			t.Errorf("port %d: outside timestamp %v before inside %v", fl.sport, outside[o].ci.Timestamp, inside[i].ci.Timestamp)
		}
	}
	for _, r := range append(inside, outside...) {
		if p := gopacket.NewPacket(r.data, layers.LayerTypeEthernet, gopacket.Default); p.Layer(layers.LayerTypeIPv6) != nil {
			t.Errorf("IPv6 noise in the capture: %s", describe(r.data))
		}
	}
}

func TestNATFault(t *testing.T) {
	needRoot(t)
	const frames = 4
	payloadOff := ethHeaderLen + 20 + 8
	tests := []struct {
		name   string
		fault  Fault
		bToA   bool
		want   func(i int, f []byte) []byte // 1-based; nil: dropped
		faults uint64
	}{
		{
			name:  "flip UDP payload byte every 2",
			fault: Fault{Direction: AtoB, Action: FlipUDPPayloadByte, Offset: 5, Every: 2, UDPPort: 4500},
			want: func(i int, f []byte) []byte {
				if i%2 == 0 {
					f[payloadOff+5] ^= 0xff
				}
				return f
			},
			faults: 2,
		},
		{
			name:  "drop frame 3",
			fault: Fault{Direction: AtoB, Action: Drop, Frame: 3, UDPPort: 4500},
			want: func(i int, f []byte) []byte {
				if i == 3 {
					return nil
				}
				return f
			},
			faults: 1,
		},
		{
			name:  "flip frame byte B to A",
			fault: Fault{Direction: BtoA, Action: FlipFrameByte, Offset: payloadOff + 1, Mask: 0x01, Every: 1},
			bToA:  true,
			want: func(i int, f []byte) []byte {
				f[payloadOff+1] ^= 0x01
				return f
			},
			faults: frames,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fault
			l := newTestLab(t, Options{Topology: TopologyNAT, CaptureDir: t.TempDir(), Fault: &f})
			g := l.Endpoints()
			a, b := startFakeGuest(t, g[0]), startFakeGuest(t, g[1])
			gwMAC := a.resolve(natGateway)
			// Open the flow (and its mapping) with an A->B frame the fault
			// skips (UDP port 53) or, for B->A faults, let A's first
			// packet count as setup.
			opener := udpFrame(t, macA, gwMAC, "198.18.1.2", "198.19.0.2", 4500, 4500, []byte("open"))
			if !tc.bToA {
				opener = udpFrame(t, macA, gwMAC, "198.18.1.2", "198.19.0.2", 5353, 53, []byte("open"))
			}
			a.write(opener)
			got := b.next(5 * time.Second)
			if got == nil {
				t.Fatal("the opening frame did not cross")
			}
			_, _, udp := udpOf(t, got)
			mapped := uint16(udp.SrcPort)
			natMAC := net.HardwareAddr(got[6:12]).String()

			var delivered [][]byte
			for i := 1; i <= frames; i++ {
				payload := make([]byte, 32)
				binary.BigEndian.PutUint32(payload, uint32(i))
				var sent []byte
				from, to := a, b
				if tc.bToA {
					sent = udpFrame(t, macB, natMAC, "198.19.0.2", "198.19.0.1", 4500, mapped, payload)
					from, to = b, a
				} else {
					sent = udpFrame(t, macA, gwMAC, "198.18.1.2", "198.19.0.2", 4500, 4500, payload)
				}
				from.write(sent)
				want := tc.want(i, append([]byte(nil), sent...))
				if want == nil {
					if recv := to.next(300 * time.Millisecond); recv != nil {
						t.Fatalf("frame %d: delivered, want dropped", i)
					}
					continue
				}
				recv := to.next(5 * time.Second)
				if recv == nil {
					t.Fatalf("frame %d: not delivered", i)
				}
				// Compare the payloads: addresses and ports are the NAT's.
				if !bytes.Equal(recv[payloadOff:], want[payloadOff:]) {
					t.Errorf("frame %d: payload\n got %x\nwant %x", i, recv[payloadOff:], want[payloadOff:])
				}
				delivered = append(delivered, recv)
				if ok, _ := udpChecksumOK(recv); f.Action == FlipUDPPayloadByte && !ok {
					t.Errorf("frame %d: UDP checksum invalid after a payload flip", i)
				}
			}
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Faults != tc.faults {
				t.Errorf("faults %d, want %d", st.Faults, tc.faults)
			}
			l.Close()
			if final, _ := l.Stats(); final.Faults != tc.faults {
				t.Errorf("final faults %d, want %d", final.Faults, tc.faults)
			}
			// The fault acts between the capture points: the sender's side
			// has the frames as sent.
			senderSide := readPcap(t, l.Captures()[map[bool]int{false: 0, true: 1}[tc.bToA]])
			n := 0
			for _, r := range senderSide {
				if len(r.data) >= payloadOff+32 && bytes.Equal(r.data[payloadOff+4:payloadOff+32], make([]byte, 28)) {
					n++
				}
			}
			if n != frames {
				t.Errorf("sender-side capture has %d of the %d frames", n, frames)
			}
			// The receiver's side has them as delivered.
			receiverSide := readPcap(t, l.Captures()[map[bool]int{false: 1, true: 0}[tc.bToA]])
			for i, d := range delivered {
				if findFrame(receiverSide, d) < 0 {
					t.Errorf("delivered frame %d is not in the receiver-side capture", i)
				}
			}
		})
	}
}

func TestNATMTU(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, Options{Topology: TopologyNAT, MTU: 9000})
	n := l.topo.(*nat)
	for i, ix := range n.tapIx {
		link, err := n.nl.LinkByIndex(ix)
		if err != nil {
			t.Fatal(err)
		}
		if got := link.Attrs().MTU; got != 9000 {
			t.Errorf("tap %d MTU %d, want 9000", i, got)
		}
		if g := l.Endpoints()[i]; g.MTU != 9000 {
			t.Errorf("guest %d MTU %d, want 9000", i, g.MTU)
		}
	}
	// A jumbo frame crosses the NAT whole.
	g := l.Endpoints()
	a, b := startFakeGuest(t, g[0]), startFakeGuest(t, g[1])
	gw := a.resolve(natGateway)
	sent := udpFrame(t, macA, gw, "198.18.1.2", "198.19.0.2", 4500, 4500, make([]byte, 9000-28))
	a.write(sent)
	got := b.next(5 * time.Second)
	if got == nil || len(got) != len(sent) {
		t.Fatalf("jumbo frame: got %d bytes, want %d", len(got), len(sent))
	}
}
