package esp

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"
)

// tsharkPacket is what tshark says about one frame.
type tsharkPacket struct {
	spi, espSeq      uint64
	icvGood          bool
	sport, dport     uint64
	seq              uint64
	checksumOK       bool
	checksumVerified bool
	payload          []byte
	tcp              bool
}

// runTshark decrypts pcap with Debian's tshark, given only the esp_sa file
// ExportForPcap wrote (in a private Wireshark configuration directory).
func runTshark(t *testing.T, pcap, saFile string) map[int64]tsharkPacket {
	t.Helper()
	bin := testenv.NeedTshark(t)
	conf := t.TempDir()
	sa, err := os.ReadFile(saFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "esp_sa"), sa, 0o644); err != nil {
		t.Fatal(err)
	}
	fields := []string{"frame.number", "esp.spi", "esp.sequence", "esp.icv_good", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.checksum.status", "tcp.payload"}
	args := []string{"-n", "-r", pcap,
		"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
		"-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	res := map[int64]tsharkPacket{}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), map[bool]int{true: 16, false: 10}[strings.HasPrefix(s, "0x")], 64)
		if err != nil && s != "" {
			t.Fatalf("tshark field %q: %v", s, err)
		}
		return v
	}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != len(fields) {
			t.Fatalf("tshark line %q: %d fields, want %d", line, len(f), len(fields))
		}
		p := tsharkPacket{
			spi: num(f[1]), espSeq: num(f[2]), icvGood: f[3] == "1" || f[3] == "True",
			sport: num(f[4]), dport: num(f[5]), seq: num(f[6]),
			checksumOK: f[7] == "1", checksumVerified: f[7] == "0" || f[7] == "1", tcp: f[4] != "",
		}
		p.payload, err = hex.DecodeString(strings.ReplaceAll(f[8], ":", ""))
		if err != nil {
			t.Fatalf("tshark payload %q: %v", f[8], err)
		}
		res[int64(num(f[0]))] = p
	}
	return res
}

// TestTsharkAgrees decrypts synthesized captures with real tshark and the
// exported esp_sa file, and checks that tshark's ICV, TCP checksum and
// payload findings agree with the analysis, packet by packet.
func TestTsharkAgrees(t *testing.T) {
	for _, suite := range suiteNamesList {
		for _, nat := range []bool{false, true} {
			name := suite + "/direct"
			if nat {
				name = suite + "/nat"
			}
			t.Run(name, func(t *testing.T) {
				s := newSynth(t, suite, "prng", 2, nat)
				bad := noOpt()
				bad.badChecksum = true
				late := noOpt()
				late.corruptAfter = 33
				early := noOpt()
				early.corrupt = 5
				s.stream(0, 9000, mss, map[int]pktOpt{1: bad, 3: late, 5: early})
				s.stream(1, 3000, 1000, nil)
				paths := s.close()
				_, saFile, err := ExportForPcap(paths[0], s.keys)
				if err != nil {
					t.Fatal(err)
				}
				ours := map[[2]int64]PacketInfo{}
				r, err := Analyze(context.Background(), AnalyzeOptions{Pcaps: paths, Keys: s.keys, Trace: func(p *PacketInfo) {
					c := *p
					c.Payload = append([]byte(nil), p.Payload...)
					ours[[2]int64{int64(p.Capture), p.Frame}] = c
				}})
				if err != nil {
					t.Fatal(err)
				}
				if r.Wire != WireEncap || len(r.Corruptions) != 2*len(paths) {
					t.Fatalf("wire %s with %d corruptions, want encap with 2 per capture", r.Wire, len(r.Corruptions))
				}
				for ci, pcap := range paths {
					ts := runTshark(t, pcap, saFile)
					if int64(len(ts)) != s.frames[ci] {
						t.Fatalf("tshark lists %d frames, want %d", len(ts), s.frames[ci])
					}
					var checked, ckCompared int
					for frame, tp := range ts {
						op, ok := ours[[2]int64{int64(ci), frame}]
						if !ok {
							t.Errorf("capture %d frame %d: tshark sees ESP SPI %#x, the analysis nothing", ci, frame, tp.spi)
							continue
						}
						if !tp.icvGood || op.Status != "ok" {
							t.Errorf("capture %d frame %d: tshark ICV good %v, ours %s", ci, frame, tp.icvGood, op.Status)
						}
						if !tp.tcp || !op.TCP {
							t.Errorf("capture %d frame %d: TCP tshark %v ours %v", ci, frame, tp.tcp, op.TCP)
							continue
						}
						if tp.spi != uint64(op.SPI) || tp.espSeq != uint64(op.ESPSeq) || tp.sport != uint64(op.SrcPort) ||
							tp.dport != uint64(op.DstPort) || tp.seq != uint64(op.Seq) {
							t.Errorf("capture %d frame %d: tshark %+v, ours %+v", ci, frame, tp, op)
						}
						if !bytes.Equal(tp.payload, op.Payload) {
							t.Errorf("capture %d frame %d: payloads differ (tshark %d bytes, ours %d)", ci, frame, len(tp.payload), len(op.Payload))
						}
						// tshark checksums over the packet's own addresses,
						// the analysis over the sending guest's (NAT-T
						// transport mode): they agree where the two are the
						// same (no NAT, or the capture on the sending
						// side); elsewhere tshark sees the NAT's rewrite.
						fromSender := op.Stream >= 0
						if !nat || fromSender == (ci == 0) {
							if !tp.checksumVerified || tp.checksumOK != op.ChecksumOK {
								t.Errorf("capture %d frame %d: checksum tshark ok=%v (verified %v), ours ok=%v", ci, frame, tp.checksumOK, tp.checksumVerified, op.ChecksumOK)
							}
							ckCompared++
						} else if tp.checksumOK {
							t.Errorf("capture %d frame %d: tshark finds the checksum right across the NAT's rewrite", ci, frame)
						}
						checked++
					}
					// Our corruptions are in tshark's decrypted payload too.
					for _, c := range r.Corruptions {
						if c.Capture != ci {
							continue
						}
						tp := ts[c.Frame]
						op := ours[[2]int64{int64(ci), c.Frame}]
						i := c.Offset - op.Offset
						if i < 0 || int(i)+len(c.Seen) > len(tp.payload) || !bytes.Equal(tp.payload[i:int(i)+len(c.Seen)], c.Seen) {
							t.Errorf("corruption %+v not in tshark's payload of frame %d", c, c.Frame)
						}
						if wantOK := c.TCPChecksum == "ok"; (!nat || ci == 0) && tp.checksumOK != wantOK {
							t.Errorf("corruption at offset %d: tshark checksum ok=%v, ours %s", c.Offset, tp.checksumOK, c.TCPChecksum)
						}
					}
					t.Logf("capture %d: %d frames agree with tshark, %d checksums compared", ci, checked, ckCompared)
				}
			})
		}
	}
}
