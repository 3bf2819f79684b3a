package esp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapSource yields the packets of one capture file without allocating per
// packet: the data next returns is valid until its next call.
type pcapSource struct {
	f        *os.File
	size     int64
	linkType layers.LinkType
	next     func() (data []byte, ci gopacket.CaptureInfo, err error)
	// dropped is what pcapng interface statistics say the capturing tool
	// dropped (cumulative per interface, so the latest value counts).
	dropped map[int]uint64
}

func (s *pcapSource) droppedTotal() int64 {
	var n int64
	for _, d := range s.dropped {
		n += int64(d)
	}
	return n
}

// Link types the decoder understands. (gopacket 1.1.19's LinkType is 8 bits
// wide, so Linux cooked v2, 276, cannot be told apart: use tcpdump -y
// LINUX_SLL or capture on one interface.)
var linkTypeNames = map[layers.LinkType]string{
	layers.LinkTypeEthernet: "Ethernet",
	layers.LinkTypeRaw:      "raw IP",
	layers.LinkTypeIPv4:     "raw IPv4",
	layers.LinkTypeLinuxSLL: "Linux cooked (SLL)",
	layers.LinkTypeNull:     "BSD loopback",
	12:                      "raw IP (DLT_RAW)",
}

// openCapture opens a pcap or pcapng file (gzip-compressed pcap too).
// Captures are read through pcapgo's zero-copy readers over a large buffer.
func openCapture(path string) (*pcapSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("capture %s is a directory, not a pcap file", path)
	}
	if st.Size() == 0 {
		f.Close()
		return nil, fmt.Errorf("capture %s is empty (0 bytes): the capture never started or was not written; rerun with --pcap", path)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture %s is %d bytes, too short for a pcap header: truncated or not a capture", path, st.Size())
	}
	src := &pcapSource{f: f, size: st.Size()}
	switch m := binary.LittleEndian.Uint32(magic); {
	case m == 0x0A0D0D0A:
		opts := pcapgo.DefaultNgReaderOptions
		opts.StatisticsCallback = func(iface int, st pcapgo.NgInterfaceStatistics) {
			if st.PacketsDropped != pcapgo.NgNoValue64 {
				if src.dropped == nil {
					src.dropped = map[int]uint64{}
				}
				src.dropped[iface] = st.PacketsDropped
			}
		}
		r, err := pcapgo.NewNgReader(br, opts)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture %s: damaged pcapng header: %w", path, err)
		}
		src.linkType = r.LinkType()
		src.next = r.ZeroCopyReadPacketData
	case m == 0xa1b2c3d4 || m == 0xd4c3b2a1 || m == 0xa1b23c4d || m == 0x4d3cb2a1 || magic[0] == 0x1f && magic[1] == 0x8b:
		r, err := pcapgo.NewReader(br)
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("capture %s: pcap file header truncated (%d bytes)", path, st.Size())
			}
			return nil, fmt.Errorf("capture %s: damaged pcap header: %w", path, err)
		}
		src.linkType = r.LinkType()
		src.next = r.ZeroCopyReadPacketData
	default:
		f.Close()
		return nil, fmt.Errorf("capture %s is not a pcap or pcapng file (starts with %x); give the file tcpdump or kbisect run wrote", path, magic)
	}
	if _, ok := linkTypeNames[src.linkType]; !ok {
		f.Close()
		return nil, fmt.Errorf("capture %s: link type %d (%s) not supported; capture on an Ethernet interface or with tcpdump -i any", path, src.linkType, src.linkType)
	}
	return src, nil
}

func (s *pcapSource) close() { s.f.Close() }

// ipv4Of returns the IPv4 packet inside a link-layer frame, or nil (and
// whether the frame was IPv6, to count it).
func ipv4Of(lt layers.LinkType, d []byte) (ip []byte, v6 bool) {
	var etype uint16
	switch lt {
	case layers.LinkTypeEthernet:
		if len(d) < 14 {
			return nil, false
		}
		etype = binary.BigEndian.Uint16(d[12:])
		d = d[14:]
		for (etype == 0x8100 || etype == 0x88a8) && len(d) >= 4 {
			etype = binary.BigEndian.Uint16(d[2:])
			d = d[4:]
		}
	case layers.LinkTypeLinuxSLL:
		if len(d) < 16 {
			return nil, false
		}
		etype = binary.BigEndian.Uint16(d[14:])
		d = d[16:]
	case layers.LinkTypeNull:
		if len(d) < 4 {
			return nil, false
		}
		fam := binary.LittleEndian.Uint32(d)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(d)
		}
		d = d[4:]
		switch fam {
		case 2:
			etype = 0x0800
		case 10, 24, 28, 30:
			etype = 0x86dd
		}
	default: // raw IP
		if len(d) == 0 {
			return nil, false
		}
		switch d[0] >> 4 {
		case 4:
			etype = 0x0800
		case 6:
			etype = 0x86dd
		}
	}
	switch etype {
	case 0x0800:
		return d, false
	case 0x86dd:
		return nil, true
	}
	return nil, false
}
