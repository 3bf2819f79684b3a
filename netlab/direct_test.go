//go:build linux

package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"
)

func newTestLab(t *testing.T, o Options) *Lab {
	t.Helper()
	l, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestDirectRelay(t *testing.T) {
	l := newTestLab(t, Options{Topology: TopologyDirect, CaptureDir: t.TempDir()})
	g := l.Endpoints()
	for i, want := range []Endpoint{
		{Kind: KindDgram, MAC: macA, Addr: "198.18.0.1/24", PeerView: "198.18.0.2", MTU: 1500},
		{Kind: KindDgram, MAC: macB, Addr: "198.18.0.2/24", PeerView: "198.18.0.1", MTU: 1500},
	} {
		got := g[i]
		got.File = nil
		if got != want {
			t.Errorf("guest %d = %+v, want %+v", i, got, want)
		}
	}

	// Frames of several sizes, each way, as QEMU would send them.
	type sent struct {
		from  int
		frame []byte
	}
	var all []sent
	sizes := []int{60, 1514, 9018, 65535}
	start := time.Now()
	for _, size := range sizes {
		for from := range 2 {
			frame := make([]byte, size)
			rand.Read(frame)
			copy(frame[0:6], mustMAC(t, [2]string{macB, macA}[from]))
			copy(frame[6:12], mustMAC(t, [2]string{macA, macB}[from]))
			if _, err := g[from].File.Write(frame); err != nil {
				t.Fatalf("write %d bytes from guest %d: %v", size, from, err)
			}
			got := readFrame(t, g[1-from].File, 5*time.Second)
			if !bytes.Equal(got, frame) {
				t.Fatalf("guest %d sent %d bytes, guest %d got %d bytes that differ", from, size, 1-from, len(got))
			}
			all = append(all, sent{from, frame})
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var want Stats
	for _, s := range all {
		c := []*Counter{&want.AtoB, &want.BtoA}[s.from]
		c.Frames++
		c.Bytes += uint64(len(s.frame))
	}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}

	caps := l.Captures()
	if len(caps) != 1 {
		t.Fatalf("captures %v, want one", caps)
	}
	recs := readPcap(t, caps[0])
	if len(recs) != len(all) {
		t.Fatalf("pcap has %d frames, want %d", len(recs), len(all))
	}
	for i, r := range recs {
		if !bytes.Equal(r.data, all[i].frame) || r.ci.Length != len(all[i].frame) {
			t.Errorf("pcap frame %d: %d bytes (wire %d) differ from the %d sent", i, len(r.data), r.ci.Length, len(all[i].frame))
		}
		if r.ci.Timestamp.Before(start.Add(-time.Second)) || r.ci.Timestamp.After(time.Now()) {
			t.Errorf("pcap frame %d: timestamp %v outside the test", i, r.ci.Timestamp)
		}
		if i > 0 && r.ci.Timestamp.Before(recs[i-1].ci.Timestamp) {
			t.Errorf("pcap frame %d: timestamp goes back", i)
		}
	}
}

func TestDirectSnaplen(t *testing.T) {
	l := newTestLab(t, Options{Topology: TopologyDirect, CaptureDir: t.TempDir(), Snaplen: 100})
	g := l.Endpoints()
	frame := make([]byte, 1514)
	rand.Read(frame)
	g[0].File.Write(frame)
	if got := readFrame(t, g[1].File, 5*time.Second); !bytes.Equal(got, frame) {
		t.Fatal("snaplen must not cut the relayed frame")
	}
	l.Close()
	recs := readPcap(t, l.Captures()[0])
	if len(recs) != 1 || !bytes.Equal(recs[0].data, frame[:100]) || recs[0].ci.Length != 1514 {
		t.Fatalf("pcap: %d records, want one of 100 bytes out of 1514", len(recs))
	}
}

func TestDirectFault(t *testing.T) {
	const frames = 6
	// The frames guest A sends: UDP 4500 -> 4500 carrying a counter, with a
	// UDP checksum (the flip must keep it valid), and one to port 53 in
	// between to check the port filter.
	payload := func(i int) []byte {
		p := make([]byte, 40)
		binary.BigEndian.PutUint32(p, uint32(i))
		return p
	}
	tests := []struct {
		name  string
		fault Fault
		// want returns the frame guest B should get for frame i (1-based
		// among the port-4500 frames), nil if dropped.
		want   func(i int, f []byte) []byte
		faults uint64
	}{
		{
			name:  "flip frame byte every 2",
			fault: Fault{Direction: AtoB, Action: FlipFrameByte, Offset: 30, Every: 2, UDPPort: 4500},
			want: func(i int, f []byte) []byte {
				if i%2 == 0 {
					f[30] ^= 0xff
				}
				return f
			},
			faults: 3,
		},
		{
			name:  "flip UDP payload byte of frame 4 with mask",
			fault: Fault{Direction: Both, Action: FlipUDPPayloadByte, Offset: 7, Mask: 0x10, Frame: 4, UDPPort: 4500},
			want: func(i int, f []byte) []byte {
				if i == 4 {
					f[ethHeaderLen+20+8+7] ^= 0x10
				}
				return f
			},
			faults: 1,
		},
		{
			name:  "drop every 3",
			fault: Fault{Direction: AtoB, Action: Drop, Every: 3, UDPPort: 4500},
			want: func(i int, f []byte) []byte {
				if i%3 == 0 {
					return nil
				}
				return f
			},
			faults: 2,
		},
		{
			name:  "other direction only",
			fault: Fault{Direction: BtoA, Action: Drop, Every: 1},
			want:  func(i int, f []byte) []byte { return f },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fault
			l := newTestLab(t, Options{Topology: TopologyDirect, CaptureDir: t.TempDir(), Fault: &f})
			g := l.Endpoints()
			var delivered [][]byte
			for i := 1; i <= frames; i++ {
				// A frame that the port filter must ignore.
				other := udpFrame(t, macA, macB, directIPA, directIPB, 5353, 53, payload(-i))
				g[0].File.Write(other)
				if got := readFrame(t, g[1].File, 5*time.Second); !bytes.Equal(got, other) {
					t.Fatalf("frame to port 53 changed")
				}
				delivered = append(delivered, other)

				frame := udpFrame(t, macA, macB, directIPA, directIPB, 4500, 4500, payload(i))
				want := tc.want(i, append([]byte(nil), frame...))
				if _, err := g[0].File.Write(frame); err != nil {
					t.Fatal(err)
				}
				got, err := tryReadFrame(g[1].File, 300*time.Millisecond)
				if want == nil {
					if err == nil {
						t.Fatalf("frame %d: delivered, want dropped", i)
					}
					continue
				}
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(withoutUDPChecksum(got), withoutUDPChecksum(want)) {
					t.Fatalf("frame %d:\n got %x\nwant %x", i, got, want)
				}
				if f.Action == FlipUDPPayloadByte {
					if ok, err := udpChecksumOK(got); err != nil || !ok {
						t.Errorf("frame %d: UDP checksum invalid after a payload flip (%v)", i, err)
					}
				}
				delivered = append(delivered, got)
			}
			l.Close()
			st, _ := l.Stats()
			if st.Faults != tc.faults {
				t.Errorf("faults %d, want %d", st.Faults, tc.faults)
			}
			if st.AtoB.Frames != 2*frames {
				t.Errorf("A->B frames %d, want %d (drops count as sent)", st.AtoB.Frames, 2*frames)
			}
			// The capture shows the frames as delivered.
			recs := readPcap(t, l.Captures()[0])
			if len(recs) != len(delivered) {
				t.Fatalf("pcap has %d frames, want %d", len(recs), len(delivered))
			}
			for i := range recs {
				if !bytes.Equal(recs[i].data, delivered[i]) {
					t.Errorf("pcap frame %d differs from the delivered one", i)
				}
			}
		})
	}
}

// withoutUDPChecksum returns a copy of an IPv4 UDP frame with its UDP
// checksum zeroed.
func withoutUDPChecksum(frame []byte) []byte {
	f := append([]byte(nil), frame...)
	if off, _, _, ok := udpInfo(f); ok {
		f[off+6], f[off+7] = 0, 0
	}
	return f
}

func TestUDPChecksumFlip(t *testing.T) {
	// Odd and even offsets, odd payload length (the last word is padded).
	for _, size := range []int{1, 2, 37, 38} {
		for off := 0; off < size; off++ {
			p := make([]byte, size)
			rand.Read(p)
			frame := udpFrame(t, macA, macB, directIPA, directIPB, 1000, 2000, p)
			s := newFaultState(&Fault{Action: FlipUDPPayloadByte, Offset: off, Every: 1, Mask: byte(off*37 + 1)})
			s.apply(AtoB, frame)
			if frame[ethHeaderLen+28+off] != p[off]^byte(off*37+1) {
				t.Fatalf("size %d offset %d: byte not flipped", size, off)
			}
			if ok, err := udpChecksumOK(frame); err != nil || !ok {
				t.Fatalf("size %d offset %d: checksum invalid (%v)", size, off, err)
			}
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no topology", Options{}},
		{"bad topology", Options{Topology: "bridge"}},
		{"bad MTU", Options{Topology: TopologyDirect, MTU: 100}},
		{"bad snaplen", Options{Topology: TopologyDirect, Snaplen: 10}},
		{"fault without rate", Options{Topology: TopologyDirect, Fault: &Fault{}}},
		{"fault with both rates", Options{Topology: TopologyDirect, Fault: &Fault{Every: 1, Frame: 1}}},
		{"fault offset", Options{Topology: TopologyDirect, Fault: &Fault{Every: 1, Offset: -1}}},
		{"fault in NAT's ethernet header", Options{Topology: TopologyNAT, Fault: &Fault{Every: 1, Offset: 6}}},
		{"fault action", Options{Topology: TopologyDirect, Fault: &Fault{Every: 1, Action: 7}}},
		{"fault direction", Options{Topology: TopologyDirect, Fault: &Fault{Every: 1, Direction: 9}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(context.Background(), tc.o)
			if err == nil {
				l.Close()
				t.Fatal("New accepted bad options")
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestDirectCaptureMany crosses several capture buffers (and batches) and
// checks that the pcap holds every frame, in order, as sent.
func TestDirectCaptureMany(t *testing.T) {
	const n = 3000 // 4.5 MB of frames: more than four capture buffers
	l := newTestLab(t, Options{Topology: TopologyDirect, CaptureDir: t.TempDir()})
	g := l.Endpoints()
	frame := func(i int) []byte {
		p := make([]byte, 1472)
		binary.BigEndian.PutUint32(p, uint32(i))
		return udpFrame(t, macA, macB, directIPA, directIPB, 4500, 4500, p)
	}
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := g[0].File.Write(frame(i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		got := readFrame(t, g[1].File, 10*time.Second)
		if !bytes.Equal(got, frame(i)) {
			t.Fatalf("frame %d arrived changed or out of order", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readPcap(t, l.Captures()[0])
	if len(recs) != n {
		t.Fatalf("pcap has %d frames, want %d", len(recs), n)
	}
	for i, r := range recs {
		if !bytes.Equal(r.data, frame(i)) {
			t.Fatalf("pcap frame %d differs from the one sent", i)
		}
	}
	if st, _ := l.Stats(); st.AtoB.Frames != n || st.CaptureDrops != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}
