//go:build linux

package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// udpFrame builds an Ethernet/IPv4/UDP frame with valid checksums.
func udpFrame(t testing.TB, srcMAC, dstMAC string, src, dst string, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: mustMAC(t, srcMAC), DstMAC: mustMAC(t, dstMAC), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Flags: layers.IPv4DontFragment}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// arpFrame builds an ARP request (op 1) or reply (op 2).
func arpFrame(t testing.TB, op uint16, srcMAC, dstMAC string, srcIP, dstIP string) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: mustMAC(t, srcMAC), DstMAC: mustMAC(t, dstMAC), EthernetType: layers.EthernetTypeARP}
	target := mustMAC(t, dstMAC)
	if op == layers.ARPRequest {
		target = make(net.HardwareAddr, 6)
	}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: mustMAC(t, srcMAC), SourceProtAddress: net.ParseIP(srcIP).To4(),
		DstHwAddress: target, DstProtAddress: net.ParseIP(dstIP).To4(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readFrame reads one frame from f within d.
func readFrame(t testing.TB, f *os.File, d time.Duration) []byte {
	t.Helper()
	fr, err := tryReadFrame(f, d)
	if err != nil {
		t.Fatalf("read from %s: %v", f.Name(), err)
	}
	return fr
}

func tryReadFrame(f *os.File, d time.Duration) ([]byte, error) {
	buf := make([]byte, maxFrame)
	if err := f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	n, err := f.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// udpChecksumOK recomputes the UDP checksum of an IPv4 frame from scratch.
func udpChecksumOK(frame []byte) (bool, error) {
	udpOff, _, _, ok := udpInfo(frame)
	if !ok {
		return false, errors.New("not an IPv4 UDP frame")
	}
	ip := frame[ethHeaderLen:]
	udp := frame[udpOff : udpOff+int(binary.BigEndian.Uint16(frame[udpOff+4:]))]
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		return true, nil
	}
	var sum uint32
	add := func(b []byte) {
		for len(b) > 1 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(ip[12:20])
	sum += protoUDP + uint32(len(udp))
	add(udp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff, nil
}

// pcapRecord is one frame read back from a capture.
type pcapRecord struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// readPcap reads a whole capture and checks its header.
func readPcap(t testing.TB, path string) []pcapRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("%s: link type %v, want Ethernet", path, r.LinkType())
	}
	// pcapgo v1.1.19's Reader.Resolution always says microseconds: check
	// the magic number of a nanosecond pcap instead.
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || binary.LittleEndian.Uint32(magic[:]) != 0xa1b23c4d {
		t.Errorf("%s: magic %x, want the nanosecond-resolution one", path, magic)
	}
	var recs []pcapRecord
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(recs), err)
		}
		recs = append(recs, pcapRecord{ci, data})
	}
}

// findFrame returns the index of the first record equal to frame, or -1.
func findFrame(recs []pcapRecord, frame []byte) int {
	for i, r := range recs {
		if bytes.Equal(r.data, frame) {
			return i
		}
	}
	return -1
}

func describe(frame []byte) string {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	return fmt.Sprint(p)
}
