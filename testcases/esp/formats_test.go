package esp

import (
	"os"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// convert copies every packet of in to out through fn, writing with write.
func convert(t *testing.T, in string, open func(f *os.File) (func(ci gopacket.CaptureInfo, d []byte) error, func() error), fn func(ci *gopacket.CaptureInfo, d []byte) []byte, out string) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	write, flush := open(o)
	for {
		d, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		d = fn(&ci, d)
		if err := write(ci, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
}

func pcapOut(lt layers.LinkType, snap uint32) func(f *os.File) (func(gopacket.CaptureInfo, []byte) error, func() error) {
	return func(f *os.File) (func(gopacket.CaptureInfo, []byte) error, func() error) {
		w := pcapgo.NewWriterNanos(f)
		if err := w.WriteFileHeader(snap, lt); err != nil {
			panic(err)
		}
		return w.WritePacket, func() error { return nil }
	}
}

func toPcapng(t *testing.T, in, out string) { toPcapngDropped(0)(t, in, out) }

// toPcapngDropped writes pcapng ending with interface statistics that
// report dropped packets, as dumpcap does.
func toPcapngDropped(dropped uint64) func(t *testing.T, in, out string) {
	return func(t *testing.T, in, out string) {
		convert(t, in, func(f *os.File) (func(gopacket.CaptureInfo, []byte) error, func() error) {
			w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
			if err != nil {
				t.Fatal(err)
			}
			return w.WritePacket, func() error {
				if dropped > 0 {
					st := pcapgo.NgInterfaceStatistics{PacketsDropped: dropped, PacketsReceived: pcapgo.NgNoValue64}
					if err := w.WriteInterfaceStats(0, st); err != nil {
						return err
					}
				}
				return w.Flush()
			}
		}, func(ci *gopacket.CaptureInfo, d []byte) []byte { return d }, out)
	}
}

func toRawIP(t *testing.T, in, out string) {
	convert(t, in, pcapOut(layers.LinkTypeRaw, 65536), func(ci *gopacket.CaptureInfo, d []byte) []byte {
		d = d[14:]
		ci.CaptureLength, ci.Length = len(d), len(d)
		return d
	}, out)
}

func snapTo(n int) func(t *testing.T, in, out string) {
	return func(t *testing.T, in, out string) {
		convert(t, in, pcapOut(layers.LinkTypeEthernet, uint32(n)), func(ci *gopacket.CaptureInfo, d []byte) []byte {
			if len(d) > n {
				d = d[:n]
			}
			ci.CaptureLength = len(d)
			return d
		}, out)
	}
}
