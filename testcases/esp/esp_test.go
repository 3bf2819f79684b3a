package esp

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/testcases/proto"
)

var suiteNamesList = []string{"cbc-aes-sha1", "cbc-aes-sha256", "gcm-aes", "null-sha1"}

const mss = 1400

func analyze(t *testing.T, s *synth, paths []string) *Report {
	t.Helper()
	r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: paths, Keys: s.keys})
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	return r
}

func corruptAt(i int) map[int]pktOpt {
	o := noOpt()
	o.corrupt = i
	return map[int]pktOpt{5: o}
}

type scenario struct {
	name  string
	nat   bool
	build func(s *synth)
	wire  string
	// missing, when set, must appear in one of Report.Missing.
	missing string
	// inside analyzes with AnalyzeOptions.ReceiverInside: a capture that
	// dropped nothing and ran to the end.
	inside bool
	check  func(t *testing.T, s *synth, r *Report)
}

// lostRetransmission is a stream whose third segment is sent twice, the
// second copy missing from the capture.
func lostRetransmission(s *synth) {
	o := noOpt()
	o.skipUp = true
	s.handshake(0, noOpt())
	for i := 0; i < 6; i++ {
		s.data(0, int64(i)*mss, mss, noOpt())
		if i == 2 {
			s.data(0, int64(i)*mss, mss, o)
		}
	}
	s.fin(0, 6*mss, noOpt())
}

var scenarios = []scenario{
	{
		name: "clean", wire: WireClean,
		build: func(s *synth) {
			s.stream(0, 30000, mss, nil)
			s.stream(1, 12345, mss, nil)
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "bytes verified", r.BytesVerified, 30000+12345)
			wantInt(t, "checksum failures", r.ChecksumFailures, 0)
			wantInt(t, "ESP packets", r.ESPPackets, s.frames[0])
			wantInt(t, "packets", r.Packets, s.frames[0])
			if len(r.Missing) != 0 {
				t.Errorf("missing = %q, want none", r.Missing)
			}
		},
	},
	{
		name: "retransmissions and reordering", wire: WireClean,
		build: func(s *synth) {
			s.handshake(0, noOpt())
			o := noOpt()
			s.data(0, 0, mss, o)
			s.data(0, 2*mss, mss, o) // out of order
			s.data(0, mss, mss, o)
			s.data(0, mss, mss, o)         // exact retransmission
			s.data(0, mss/2, 2*mss, o)     // overlapping retransmission
			s.data(0, 3*mss, mss, o)       // in order again
			s.data(0, 3*mss+10, mss-20, o) // retransmission inside a segment
			s.ack(0, 4*mss)
			s.fin(0, 4*mss, o)
		},
		check: func(t *testing.T, s *synth, r *Report) {
			st := r.Streams[0]
			wantInt(t, "verified", st.Verified, 4*mss)
			wantInt(t, "retransmitted", st.Retransmitted, mss+2*mss+mss-20)
			wantInt(t, "out of order", st.OutOfOrder, 1)
			wantInt(t, "copies differ", st.CopiesDiffer, 0)
		},
	},
	{
		name: "encap corruption before the checksum", wire: WireEncap,
		build: func(s *synth) { s.stream(0, 20000, mss, corruptAt(100)) },
		check: func(t *testing.T, s *synth, r *Report) {
			c := oneCorruption(t, r)
			wantInt(t, "offset", c.Offset, 5*mss+100)
			wantInt(t, "length", int64(c.Length), 1)
			if c.TCPChecksum != "ok" || !c.OffsetExact || c.Retransmission {
				t.Errorf("corruption = %+v, want checksum ok, exact offset, first copy", c)
			}
			want := make([]byte, 1)
			proto.NewPattern(s.patKind, s.seed, 0).Fill(want, c.Offset)
			if !bytes.Equal(c.Expected, want) || !bytes.Equal(c.Seen, []byte{want[0] ^ 0x5a}) {
				t.Errorf("expected %x seen %x, want %x and %x", c.Expected, c.Seen, want, want[0]^0x5a)
			}
			wantInt(t, "checksum failures", r.ChecksumFailures, 0)
			if c.Frame <= 0 || c.SPI != s.dataSA.SPI || c.ESPSeq == 0 {
				t.Errorf("corruption location %+v incomplete", c)
			}
		},
	},
	{
		name: "encap corruption after the checksum", wire: WireEncap,
		build: func(s *synth) {
			o := noOpt()
			o.corruptAfter = 7
			s.stream(0, 20000, mss, map[int]pktOpt{3: o})
		},
		check: func(t *testing.T, s *synth, r *Report) {
			c := oneCorruption(t, r)
			wantInt(t, "offset", c.Offset, 3*mss+7)
			if c.TCPChecksum != "bad" {
				t.Errorf("checksum = %s, want bad", c.TCPChecksum)
			}
			wantInt(t, "checksum failures", r.ChecksumFailures, 1)
		},
	},
	{
		name: "corrupted copy then clean retransmission", wire: WireEncap,
		build: func(s *synth) {
			s.handshake(0, noOpt())
			o := noOpt()
			s.data(0, 0, mss, o)
			bad := noOpt()
			bad.corrupt = 3
			s.data(0, mss, mss, bad)
			s.data(0, mss, mss, o) // the retransmission is clean
			s.data(0, 2*mss, mss, o)
			s.ack(0, 3*mss)
			s.fin(0, 3*mss, o)
		},
		check: func(t *testing.T, s *synth, r *Report) {
			c := oneCorruption(t, r)
			wantInt(t, "offset", c.Offset, mss+3)
			wantInt(t, "copies differ", r.Streams[0].CopiesDiffer, 1)
		},
	},
	{
		name: "nat clean", nat: true, wire: WireClean,
		build: func(s *synth) {
			s.stream(0, 25000, mss, nil)
			s.stream(1, 25000, mss, nil)
		},
		check: func(t *testing.T, s *synth, r *Report) {
			if len(r.Captures) != 2 || r.Compare == nil {
				t.Fatalf("want two captures and a comparison, got %d, %v", len(r.Captures), r.Compare)
			}
			wantInt(t, "checksum failures", r.ChecksumFailures, 0)
			wantInt(t, "unverifiable", r.Captures[0].ChecksumUnverifiable+r.Captures[1].ChecksumUnverifiable, 0)
			wantInt(t, "same", r.Compare.Same, s.frames[0])
			wantInt(t, "changed", r.Compare.Changed, 0)
			wantInt(t, "verified", r.BytesVerified, 50000)
		},
	},
	{
		name: "nat changes a packet", nat: true, wire: WireNAT,
		build: func(s *synth) {
			o := noOpt()
			o.natFlip = true
			s.handshake(0, noOpt())
			for i := 0; i < 8; i++ {
				if i == 4 {
					s.data(0, int64(i)*mss, mss, o)
				}
				s.data(0, int64(i)*mss, mss, noOpt()) // the retransmission after the receiver dropped it
			}
			s.ack(0, 8*mss)
			s.fin(0, 8*mss, noOpt())
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "changed", r.Compare.Changed, 1)
			wantInt(t, "receiver-side ICV failures", r.Captures[1].ICVFailures, 1)
			wantInt(t, "sender-side ICV failures", r.Captures[0].ICVFailures, 0)
			if ex := r.Compare.Examples[0]; ex.Frames[0] == 0 || ex.Frames[1] == 0 {
				t.Errorf("change example without frames: %+v", ex)
			}
		},
	},
	{
		name: "nat drops a packet", nat: true, wire: WireClean,
		build: func(s *synth) {
			o := noOpt()
			o.skipDown = true
			s.handshake(0, noOpt())
			for i := 0; i < 8; i++ {
				if i == 4 {
					s.data(0, int64(i)*mss, mss, o)
				}
				s.data(0, int64(i)*mss, mss, noOpt())
			}
			s.ack(0, 8*mss)
			s.fin(0, 8*mss, noOpt())
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "only first", r.Compare.OnlyFirst, 1)
			wantInt(t, "only second", r.Compare.OnlySecond, 0)
		},
	},
	{
		name: "nat keys without the nat view", nat: true, wire: WireClean,
		build: func(s *synth) {
			s.stream(0, 20000, mss, nil)
			// Keep only the sender's view of the SAs: the ACKs' checksums
			// (over the receiver's view) match no address pair on the
			// sender's side.
			var sas []proto.SA
			for _, sa := range s.keys.SAs {
				if sa.Src == netipString(s.senderPriv) || sa.Dst == netipString(s.senderPriv) {
					sas = append(sas, sa)
				}
			}
			s.keys.SAs = sas
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "checksum failures", r.ChecksumFailures, 0)
			if r.Captures[0].ChecksumUnverifiable == 0 {
				t.Errorf("sender-side unverifiable checksums = 0, want the ACKs")
			}
		},
	},
	{
		name: "no SYN", wire: WireUnknown, missing: "SYN not captured",
		build: func(s *synth) {
			o := noOpt()
			o.skipUp = true
			s.handshake(0, o)
			s.data(0, 0, mss, o)
			for i := 1; i < 10; i++ {
				s.data(0, int64(i)*mss, mss, noOpt())
			}
			s.fin(0, 10*mss, noOpt())
		},
		check: func(t *testing.T, s *synth, r *Report) {
			if r.BytesVerified != 9*mss {
				t.Errorf("verified %d, want %d (everything after the first captured segment)", r.BytesVerified, 9*mss)
			}
			if r.Streams[0].OffsetsExact {
				t.Errorf("offsets exact without a SYN")
			}
		},
	},
	{
		name: "no SYN with corruption", wire: WireEncap,
		build: func(s *synth) {
			o := noOpt()
			o.skipUp = true
			s.handshake(0, o)
			bad := noOpt()
			bad.corrupt = 9
			for i := 0; i < 10; i++ {
				switch i {
				case 0:
					s.data(0, 0, mss, o)
				case 6:
					s.data(0, int64(i)*mss, mss, bad)
				default:
					s.data(0, int64(i)*mss, mss, noOpt())
				}
			}
			s.fin(0, 10*mss, noOpt())
		},
		check: func(t *testing.T, s *synth, r *Report) {
			c := oneCorruption(t, r)
			if c.OffsetExact {
				t.Errorf("offset claimed exact without a SYN")
			}
			if s.patKind == "prng" && c.Offset%proto.PatternBlock != (6*mss+9)%proto.PatternBlock {
				t.Errorf("offset %d, want %d modulo %d", c.Offset, 6*mss+9, proto.PatternBlock)
			}
		},
	},
	{
		name: "capture lost a segment", wire: WireUnknown, missing: "never captured",
		build: func(s *synth) {
			o := noOpt()
			o.skipUp = true
			s.stream(0, 20000, mss, map[int]pktOpt{4: o})
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "gap bytes", r.Streams[0].GapBytes, mss)
			wantInt(t, "ESP missing", r.ESPMissing, 1)
			if !hasMissing(r, "in no capture") {
				t.Errorf("missing %q lacks the ESP sequence gap", r.Missing)
			}
		},
	},
	{
		name: "capture lost a retransmitted copy", wire: WireUnknown, missing: "in no capture",
		build: lostRetransmission,
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "gap bytes", r.Streams[0].GapBytes, 0)
		},
	},
	{
		// The same packet lost before a capture known to drop nothing
		// (dom0's said so): a loss on the path, which no one received.
		name: "lost before a lossless capture", wire: WireClean, inside: true,
		build: lostRetransmission,
		check: func(t *testing.T, s *synth, r *Report) {
			if len(r.Missing) != 0 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "lost before the capture point") }) {
				t.Errorf("missing %q, notes %q: want none missing and the loss noted", r.Missing, r.Notes)
			}
		},
	},
	{
		name: "no FIN", wire: WireUnknown, missing: "no FIN",
		build: func(s *synth) {
			s.handshake(0, noOpt())
			for i := 0; i < 5; i++ {
				s.data(0, int64(i)*mss, mss, noOpt())
			}
		},
	},
	{
		// The sender's first connect came before the receiver listened
		// (an old kernel boots faster than 6.1): refused with a reset,
		// then connected again from the next port.
		name: "refused connect, then the stream", wire: WireClean,
		build: func(s *synth) {
			st := s.streams[0]
			s.send(true, st.sport-1, st.dport, 7, 0, tcpSYN, nil, noOpt())
			s.send(false, st.dport, st.sport-1, 0, 8, tcpRST|tcpACK, nil, noOpt())
			s.stream(0, 10000, mss, nil)
		},
		check: func(t *testing.T, s *synth, r *Report) {
			var refused, data int
			for _, st := range r.Streams {
				switch {
				case st.RST && !st.FIN && st.Verified == 0:
					refused++
				case st.FIN && st.Verified == 10000:
					data++
				}
			}
			if refused != 1 || data != 1 {
				t.Errorf("streams %+v: want one refused connection and one whole stream", r.Streams)
			}
		},
	},
	{
		name: "stream never seen", wire: WireUnknown, missing: "stream 1 (port 5002): not seen",
		build: func(s *synth) {
			s.stream(0, 5000, mss, nil)
			s.keys.Streams = 2
		},
	},
	{
		name: "duplicated packets", wire: WireClean,
		build: func(s *synth) {
			o := noOpt()
			o.dup = true
			s.stream(0, 10000, mss, map[int]pktOpt{2: o, 3: o})
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "duplicates", r.Captures[0].Duplicates, 2)
			wantInt(t, "retransmitted", r.Streams[0].Retransmitted, 0)
		},
	},
	{
		name: "bad checksum, right payload", wire: WireClean,
		build: func(s *synth) {
			o := noOpt()
			o.badChecksum = true
			s.stream(0, 10000, mss, map[int]pktOpt{2: o})
		},
		check: func(t *testing.T, s *synth, r *Report) {
			wantInt(t, "checksum failures", r.ChecksumFailures, 1)
			wantInt(t, "stream checksum failures", r.Streams[0].ChecksumFailures, 1)
		},
	},
	{
		name: "noise on the wire", wire: WireClean,
		build: func(s *synth) {
			s.handshake(0, noOpt())
			arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06}, make([]byte, 28)...)
			s.writeRaw(arp)
			s.writeRaw(s.frame(s.senderPriv, s.receiver, s.senderUDP, 4500, []byte{0xff}))                      // NAT keepalive
			s.writeRaw(s.frame(s.senderPriv, s.receiver, s.senderUDP, 4500, append(make([]byte, 4), "IKE"...))) // non-ESP marker
			s.writeRaw(s.frame(s.senderPriv, s.receiver, 5353, 5353, []byte("not ESP")))                        // other UDP
			s.writeRaw(s.frame(s.senderPriv, s.receiver, s.senderUDP, 4500, bytes.Repeat([]byte{0xab}, 64)))    // unknown SPI
			v6 := append([]byte{0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x86, 0xdd, 0x60}, make([]byte, 39)...)
			s.writeRaw(v6)
			for i := 0; i < 4; i++ {
				s.data(0, int64(i)*mss, mss, noOpt())
			}
			s.fin(0, 4*mss, noOpt())
		},
		check: func(t *testing.T, s *synth, r *Report) {
			c := r.Captures[0]
			for name, got := range map[string]int64{"keepalives": c.Keepalives, "non-ESP": c.NonESP, "other IP": c.OtherIP, "unknown SPI": c.UnknownSPI, "IPv6": c.IPv6, "not IP": c.NotIP} {
				wantInt(t, name, got, 1)
			}
		},
	},
}

func TestAnalyzeScenarios(t *testing.T) {
	for _, suite := range suiteNamesList {
		for _, pattern := range []string{"prng", "zero"} {
			for _, sc := range scenarios {
				if pattern == "zero" && suite != "cbc-aes-sha1" {
					continue // the zero pattern changes nothing the suites touch
				}
				t.Run(suite+"/"+pattern+"/"+sc.name, func(t *testing.T) {
					s := newSynth(t, suite, pattern, 1, sc.nat)
					if sc.name == "clean" || strings.HasPrefix(sc.name, "nat clean") {
						s = newSynth(t, suite, pattern, 2, sc.nat)
					}
					sc.build(s)
					r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: s.close(), Keys: s.keys, ReceiverInside: sc.inside})
					if err != nil {
						t.Fatalf("Analyze: %v", err)
					}
					if r.Wire != sc.wire {
						t.Fatalf("wire = %s (%s), want %s; missing %q", r.Wire, r.Reason, sc.wire, r.Missing)
					}
					if sc.missing != "" && !hasMissing(r, sc.missing) {
						t.Errorf("missing = %q, want one with %q", r.Missing, sc.missing)
					}
					if r.Reason == "" {
						t.Errorf("empty reason")
					}
					if sc.check != nil {
						sc.check(t, s, r)
					}
				})
			}
		}
	}
}

func hasMissing(r *Report, sub string) bool {
	for _, m := range r.Missing {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func wantInt[T ~int | ~int64](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func oneCorruption(t *testing.T, r *Report) WireCorruption {
	t.Helper()
	if len(r.Corruptions) != 1 {
		t.Fatalf("%d corruptions %+v, want 1", len(r.Corruptions), r.Corruptions)
	}
	c := r.Corruptions[0]
	if c.Side != "wire" || c.Stream != 0 {
		t.Errorf("corruption %+v: want side wire, stream 0", c)
	}
	return c
}

// TestWrongKeys: keys that do not belong to the capture never give a
// verdict other than unknown.
func TestWrongKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(k *Keys)
		missing string
	}{
		{"other auth key", func(k *Keys) {
			for i := range k.SAs {
				k.SAs[i].AuthKey = bytes.Repeat([]byte{7}, len(k.SAs[i].AuthKey))
			}
		}, "do not match"},
		{"other SPIs", func(k *Keys) {
			for i := range k.SAs {
				k.SAs[i].SPI ^= 0xffff
			}
		}, "no ESP packet matches"},
		{"other suite", func(k *Keys) {
			k.Suite = "cbc-aes-sha256"
			for i := range k.SAs {
				k.SAs[i].AuthKey = bytes.Repeat(k.SAs[i].AuthKey, 2)[:32]
			}
		}, "do not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
			s.stream(0, 20000, mss, corruptAt(3))
			paths := s.close()
			tc.mutate(s.keys)
			r := analyze(t, s, paths)
			if r.Wire != WireUnknown {
				t.Fatalf("wire = %s (%s), want unknown", r.Wire, r.Reason)
			}
			if !hasMissing(r, tc.missing) {
				t.Errorf("missing = %q, want %q", r.Missing, tc.missing)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		mutate func(k *Keys)
	}{
		{"other seed", func(k *Keys) { k.Seed++ }},
		{"other pattern kind", func(k *Keys) { k.Pattern = "zero" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Right crypto keys, wrong pattern: every byte differs,
			// which is not a corruption but a keys file of another run.
			s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
			s.stream(0, 5000, mss, nil)
			paths := s.close()
			tc.mutate(s.keys)
			r := analyze(t, s, paths)
			if r.Wire != WireUnknown || !strings.Contains(r.Reason, "pattern") {
				t.Fatalf("wire = %s (%s), want unknown naming the pattern", r.Wire, r.Reason)
			}
			rc := []proto.Corruption{{Stream: 0, Offset: 10, Length: 1}}
			if v := Classify(r, rc); v != WireUnknown {
				t.Errorf("Classify = %s with another run's pattern, want unknown", v)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	s := newSynth(t, "gcm-aes", "prng", 1, false)
	s.stream(0, 20000, mss, nil)
	good := s.close()[0]
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		err  string // error substring, or "" for a report
		miss string // Missing substring for a report
	}{
		{"empty", write("empty.pcap", nil), "is empty", ""},
		{"not a pcap", write("text.pcap", []byte("hello, this is not a capture file\n")), "not a pcap or pcapng file", ""},
		{"short header", write("short.pcap", full[:10]), "header", ""},
		{"missing", filepath.Join(dir, "nope.pcap"), "no such file", ""},
		{"directory", dir, "directory", ""},
		{"header only", write("hdr.pcap", full[:24]), "", "no packets"},
		{"cut mid-packet", write("cut.pcap", full[:len(full)-100]), "", "incomplete"},
		{"cut at half", write("half.pcap", full[:len(full)/2]), "", "incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: []string{tc.path}, Keys: s.keys})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			if r.Wire != WireUnknown || !hasMissing(r, tc.miss) {
				t.Fatalf("wire %s missing %q, want unknown with %q", r.Wire, r.Missing, tc.miss)
			}
		})
	}
	t.Run("second capture bad", func(t *testing.T) {
		_, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: []string{good, write("bad2.pcap", []byte("garbage garbage"))}, Keys: s.keys})
		if err == nil || !strings.Contains(err.Error(), "bad2.pcap") {
			t.Fatalf("err = %v, want one naming bad2.pcap", err)
		}
	})
	t.Run("options", func(t *testing.T) {
		for _, o := range []AnalyzeOptions{
			{Keys: s.keys},
			{Pcaps: []string{good, good, good}, Keys: s.keys},
			{Pcaps: []string{good}},
			{Pcaps: []string{good}, Keys: &Keys{Suite: "rot13", Streams: 1}},
		} {
			if _, err := Analyze(context.Background(), o); err == nil {
				t.Errorf("Analyze(%+v) succeeded, want an error", o)
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Analyze(ctx, AnalyzeOptions{Pcaps: []string{good}, Keys: s.keys}); err == nil {
			t.Errorf("Analyze with a cancelled context succeeded")
		}
	})
}

// TestPcapFormats reads the same traffic as pcapng, nanosecond pcap, raw
// IP and with a snap length.
func TestPcapFormats(t *testing.T) {
	s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
	s.stream(0, 8000, mss, nil)
	src := s.close()[0]
	want := analyze(t, s, []string{src})
	if want.Wire != WireClean {
		t.Fatalf("baseline wire = %s", want.Wire)
	}
	for _, tc := range []struct {
		name string
		conv func(t *testing.T, in, out string)
		wire string
	}{
		{"pcapng", toPcapng, WireClean},
		{"pcapng with drops", toPcapngDropped(3), WireUnknown},
		{"raw IP", toRawIP, WireClean},
		{"snap length 200", snapTo(200), WireUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "x.pcap")
			tc.conv(t, src, out)
			r := analyze(t, s, []string{out})
			if r.Wire != tc.wire {
				t.Fatalf("wire = %s (%s), want %s", r.Wire, r.Reason, tc.wire)
			}
			if tc.wire == WireClean && r.BytesVerified != want.BytesVerified {
				t.Errorf("verified %d, want %d", r.BytesVerified, want.BytesVerified)
			}
			if tc.wire == WireUnknown && len(r.Missing) == 0 {
				t.Errorf("unknown without saying what is missing")
			}
			t.Logf("%s: %s", r.Wire, r.Reason)
		})
	}
}

func TestKeysFile(t *testing.T) {
	s := newSynth(t, "gcm-aes", "prng", 3, true)
	s.close()
	dir := t.TempDir()
	pcap := filepath.Join(dir, "run.pcap")
	kp, sp, err := ExportForPcap(pcap, s.keys)
	if err != nil {
		t.Fatal(err)
	}
	if kp != filepath.Join(dir, "run.keys.json") || sp != filepath.Join(dir, "run.esp_sa") {
		t.Errorf("paths %s %s", kp, sp)
	}
	k, err := LoadKeys(kp)
	if err != nil {
		t.Fatal(err)
	}
	// AnalyzeRun finds the keys next to the capture.
	for i, p := range s.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, []string{"run.pcap", "run-receiver.pcap"}[i]), b, 0o644)
	}
	r, err := AnalyzeRun(context.Background(), pcap, filepath.Join(dir, "run-receiver.pcap"))
	if err != nil || r.Wire != WireUnknown || !hasMissing(r, "no packets") {
		t.Errorf("AnalyzeRun = %v, %v; want unknown: the synthesized captures hold no packets", r, err)
	}
	if k.Suite != "gcm-aes" || k.Streams != 3 || k.Seed != s.keys.Seed || len(k.SAs) != len(s.keys.SAs) {
		t.Fatalf("loaded %+v, want %+v", k, s.keys)
	}
	for i := range k.SAs {
		if !bytes.Equal(k.SAs[i].EncKey, s.keys.SAs[i].EncKey) || k.SAs[i].SPI != s.keys.SAs[i].SPI {
			t.Errorf("SA %d differs after a round trip", i)
		}
	}
	// The NAT run has both views of each SA: 4 records.
	if len(k.SAs) != 4 {
		t.Errorf("%d SAs, want 4 (two SPIs, two views)", len(k.SAs))
	}
	for _, bad := range []string{`{`, `{"suite":"cbc-aes-sha1","streams":1,"sas":[{"spi":1,"enc_key":"00"}]}`, `{"suite":"x"}`} {
		p := filepath.Join(dir, "bad.json")
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := LoadKeys(p); err == nil || !strings.Contains(err.Error(), "bad.json") {
			t.Errorf("LoadKeys(%s) = %v, want an error naming the file", bad, err)
		}
	}
}

func TestWiresharkSA(t *testing.T) {
	k := &Keys{Suite: "cbc-aes-sha1", Streams: 1, SAs: []proto.SA{{
		SPI: 0xc001, Src: "10.0.1.2", Dst: "10.0.2.2",
		EncKey: bytes.Repeat([]byte{0x11}, 16), AuthKey: bytes.Repeat([]byte{0x22}, 20),
	}, {SPI: 0xc002, Dst: "10.0.1.2", EncKey: bytes.Repeat([]byte{0x33}, 16), AuthKey: bytes.Repeat([]byte{0x44}, 20)}}}
	var b bytes.Buffer
	if err := WriteWiresharkSA(&b, k); err != nil {
		t.Fatal(err)
	}
	want := `"IPv4","10.0.1.2","10.0.2.2","0x0000c001","AES-CBC [RFC3602]","0x11111111111111111111111111111111","HMAC-SHA-1-96 [RFC2404]","0x2222222222222222222222222222222222222222"` + "\n" +
		`"IPv4","*","10.0.1.2","0x0000c002","AES-CBC [RFC3602]","0x33333333333333333333333333333333","HMAC-SHA-1-96 [RFC2404]","0x4444444444444444444444444444444444444444"` + "\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("esp_sa:\n%s\nwant records:\n%s", got, want)
	}
	for suite, names := range map[string][2]string{
		"cbc-aes-sha256": {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
		"gcm-aes":        {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
		"null-sha1":      {"NULL", "HMAC-SHA-1-96 [RFC2404]"},
	} {
		s := proto.Suites[suite]
		k := &Keys{Suite: suite, Streams: 1, SAs: []proto.SA{{SPI: 1, EncKey: make([]byte, s.EncKey), AuthKey: make([]byte, s.AuthKey)}}}
		lines, err := WiresharkSALines(k)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(lines[0], ",")
		if f[4] != `"`+names[0]+`"` || f[6] != `"`+names[1]+`"` {
			t.Errorf("%s: algorithms %s %s, want %q %q", suite, f[4], f[6], names[0], names[1])
		}
		if s.EncKey == 0 && f[5] != `""` || s.AuthKey == 0 && f[7] != `""` {
			t.Errorf("%s: empty key not written as \"\": %s", suite, lines[0])
		}
	}
}

func TestClassify(t *testing.T) {
	clean := func(t *testing.T) *Report {
		s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
		s.stream(0, 20000, mss, nil)
		return analyze(t, s, s.close())
	}
	recv := func(off int64, n int) []proto.Corruption {
		return []proto.Corruption{{Stream: 0, Offset: off, Length: n, Side: proto.RoleReceiver}}
	}
	t.Run("decap", func(t *testing.T) {
		r := clean(t)
		if v, why := Explain(r, recv(5000, 1)); v != WireDecap {
			t.Fatalf("verdict %s (%s), want decap", v, why)
		}
	})
	t.Run("no receiver corruption", func(t *testing.T) {
		r := clean(t)
		if v := Classify(r, nil); v != WireClean {
			t.Fatalf("verdict %s, want the wire's clean", v)
		}
	})
	t.Run("beyond the capture", func(t *testing.T) {
		r := clean(t)
		if v := Classify(r, recv(20000, 4)); v != WireUnknown {
			t.Fatalf("verdict %s, want unknown", v)
		}
	})
	t.Run("other stream", func(t *testing.T) {
		r := clean(t)
		if v := Classify(r, []proto.Corruption{{Stream: 3, Offset: 1, Length: 1}}); v != WireUnknown {
			t.Fatalf("verdict %s, want unknown", v)
		}
	})
	t.Run("encap", func(t *testing.T) {
		s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
		s.stream(0, 20000, mss, corruptAt(100))
		r := analyze(t, s, s.close())
		if v, why := Explain(r, recv(5*mss+100, 1)); v != WireEncap {
			t.Fatalf("verdict %s (%s), want encap", v, why)
		}
		// One on the wire, one not: encap, and the reason says both.
		c := append(recv(5*mss+100, 1), recv(17, 1)...)
		if v, why := Explain(r, c); v != WireEncap || !strings.Contains(why, "1 others were right") {
			t.Fatalf("verdict %s (%s), want encap naming the decap one", v, why)
		}
		// The receiver reports only a corruption the wire did not carry:
		// the authenticated corrupted packet still makes it encap.
		if v, why := Explain(r, recv(17, 1)); v != WireEncap || !strings.Contains(why, "did not report") {
			t.Fatalf("verdict %s (%s), want encap for the unreported wire corruption", v, why)
		}
	})
	t.Run("gap", func(t *testing.T) {
		s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
		o := noOpt()
		o.skipUp = true
		s.stream(0, 20000, mss, map[int]pktOpt{4: o})
		r := analyze(t, s, s.close())
		for _, off := range []int64{4*mss + 5, 100} { // in the gap; elsewhere but ESP packets missing
			if v, why := Explain(r, recv(off, 1)); v != WireUnknown {
				t.Errorf("offset %d: verdict %s (%s), want unknown", off, v, why)
			}
		}
	})
	// A run stopped at its first corruption: the capture ends before the
	// stream's FIN. Decap only when the capture outlived the receiver.
	t.Run("no FIN", func(t *testing.T) {
		cases := []struct {
			inside  bool
			corrupt bool
			want    string
		}{
			{false, false, WireUnknown},
			{true, false, WireDecap},
			{false, true, WireEncap},
			{true, true, WireEncap},
		}
		for _, c := range cases {
			s := newSynth(t, "cbc-aes-sha1", "prng", 1, false)
			s.handshake(0, noOpt())
			for i := 0; i < 8; i++ {
				o := noOpt()
				if c.corrupt && i == 5 {
					o.corrupt = 100
				}
				s.data(0, int64(i)*mss, mss, o)
			}
			r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: s.close(), Keys: s.keys, ReceiverInside: c.inside})
			if err != nil {
				t.Fatal(err)
			}
			if v, why := Explain(r, recv(5*mss+100, 1)); v != c.want {
				t.Errorf("receiver inside %v, wire corrupted %v: verdict %s (%s), want %s", c.inside, c.corrupt, v, why, c.want)
			}
		}
	})
	t.Run("sender side ignored", func(t *testing.T) {
		r := clean(t)
		c := recv(5000, 1)
		c[0].Side = "wire"
		if v := Classify(r, c); v != WireClean {
			t.Fatalf("verdict %s, want clean: only receiver corruptions count", v)
		}
	})
}

func TestRangeSet(t *testing.T) {
	var s rangeSet
	adds := []struct {
		a, b, overlap int64
	}{{0, 10, 0}, {10, 20, 0}, {30, 40, 0}, {25, 35, 5}, {50, 60, 0}, {5, 55, 15 + 15 + 5}, {0, 60, 60}}
	for _, x := range adds {
		if got := s.add(x.a, x.b); got != x.overlap {
			t.Errorf("add(%d,%d) overlap %d, want %d (set %v)", x.a, x.b, got, x.overlap, s.r)
		}
	}
	if len(s.r) != 1 || s.r[0] != (Range{0, 60}) {
		t.Errorf("set %v, want [0,60)", s.r)
	}
	var g rangeSet
	g.add(10, 20)
	g.add(30, 40)
	gaps, n := g.gaps(50)
	if n != 30 || len(gaps) != 3 || gaps[1] != (Range{20, 10}) {
		t.Errorf("gaps %v %d", gaps, n)
	}
	if c := g.covered(15, 35); c != 10 {
		t.Errorf("covered %d, want 10", c)
	}
}

func TestOnesSum(t *testing.T) {
	b := make([]byte, 3001)
	for i := range b {
		b[i] = byte(i*7 + i>>3)
	}
	for n := 0; n <= len(b); n += 1 + n/3 {
		var ref uint32
		for i := 0; i+1 < n; i += 2 {
			ref += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if n%2 == 1 {
			ref += uint32(b[n-1]) << 8
		}
		for ref > 0xffff {
			ref = ref>>16 + ref&0xffff
		}
		if got := fold64(onesSum(b[:n])); got != uint64(ref) && !(got == 0xffff && ref == 0) && !(got == 0 && ref == 0xffff) {
			t.Fatalf("n=%d: sum %#x, want %#x", n, got, ref)
		}
	}
	_ = binary.BigEndian
}

// TestCipherBlock: a ciphertext block replaced by 16 bytes of text after
// encryption and before the ICV (what AES-NI code whose register was
// reloaded from an application's FPU state sends: the Xen PV lazy-FPU bug
// of issue #15 sent the agent's own "{"type":"progres") decrypts to
// garbage that the analysis places on the wire, with a bad TCP checksum,
// and names the block and its text.
func TestCipherBlock(t *testing.T) {
	s := newSynth(t, "cbc-aes-sha1", "zero", 1, false)
	s.handshake(0, noOpt())
	text := []byte(`{"type":"progres`)
	// The plaintext is the 32-byte TCP header and the payload: block 4 is
	// payload bytes 32 to 47 of the segment at offset 1380.
	o := noOpt()
	o.cipherBlock, o.cipherIdx = text, 4
	s.data(0, 0, 1380, noOpt())
	s.data(0, 1380, 1380, o)
	s.data(0, 2760, 1380, noOpt())
	s.fin(0, 4140, noOpt())
	r := analyze(t, s, s.close())
	if r.Wire != WireEncap {
		t.Fatalf("wire %s (%s), want encap", r.Wire, r.Reason)
	}
	c := oneCorruption(t, r)
	if c.Offset != 1380+32 || c.TCPChecksum != "bad" {
		t.Errorf("corruption at %d, checksum %s; want 1412, bad", c.Offset, c.TCPChecksum)
	}
	if string(c.CipherBlock) != string(text) || c.CipherBlockText != string(text) {
		t.Errorf("cipher block %x (%q), want the text %q", []byte(c.CipherBlock), c.CipherBlockText, text)
	}
	// A block of random bytes is named, but not as text.
	s = newSynth(t, "cbc-aes-sha1", "zero", 1, false)
	s.handshake(0, noOpt())
	o.cipherBlock = []byte{0x8b, 0x01, 0xf2, 0x33, 0x90, 0x00, 0xc4, 0x7e, 0x10, 0x99, 0xa0, 0x5c, 0xee, 0x02, 0x41, 0xd7}
	s.data(0, 0, 1380, o)
	s.fin(0, 1380, noOpt())
	r = analyze(t, s, s.close())
	c = oneCorruption(t, r)
	if string(c.CipherBlock) != string(o.cipherBlock) || c.CipherBlockText != "" {
		t.Errorf("cipher block %x (%q), want %x and no text", []byte(c.CipherBlock), c.CipherBlockText, o.cipherBlock)
	}
}
