package esp

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/kbisect/kbisect/testcases/proto"
)

// synth writes realistic NAT-T transport-mode captures: Ethernet, IPv4, UDP
// 4500, ESP sealed with Go's crypto for the suite, and inside it TCP
// segments of the pattern streams, as a Linux sender and receiver would put
// them on the wire. With nat set it writes two captures, before and after a
// NAT that rewrites the sender's address and UDP port.
type synth struct {
	t      testing.TB
	suite  proto.Suite
	keys   *Keys
	nat    bool
	rng    *rand.Rand
	dir    string
	paths  []string
	files  []*os.File
	bufs   []*bufio.Writer
	ws     []*pcapgo.Writer
	ts     time.Time
	ipID   uint16
	frames [2]int64

	senderPriv, receiver, natPub [4]byte
	senderUDP, natUDP            uint16
	dataSA, ackSA                proto.SA
	seal                         map[uint32]*sealer
	espSeq                       map[uint32]uint32
	streams                      []*sstream
	patKind                      string
	seed                         uint64
}

type sstream struct {
	sport, dport uint16
	isn, risn    uint32
	pat          *proto.Pattern
}

// pkt options.
type pktOpt struct {
	// corrupt flips a payload byte at this index before the TCP checksum
	// (like an application-level corruption); corruptAfter after it (like
	// a stack or crypto corruption).
	corrupt, corruptAfter int
	// natFlip flips a ciphertext byte in the receiver-side copy only.
	natFlip bool
	// skip leaves the packet out of capture 0 (up), 1 (down), or both (2);
	// the ESP sequence number is used all the same.
	skipUp, skipDown bool
	// badChecksum breaks the TCP checksum field itself.
	badChecksum bool
	// dup writes the packet twice to the capture(s).
	dup bool
	// cipherBlock, when set, replaces ciphertext block cipherIdx after
	// encryption and before the ICV (what an encrypting register loaded
	// from elsewhere produces: authenticated garbage).
	cipherBlock []byte
	cipherIdx   int
}

func noOpt() pktOpt { return pktOpt{corrupt: -1, corruptAfter: -1} }

func newSynth(t testing.TB, suiteName, pattern string, streams int, nat bool) *synth {
	t.Helper()
	return newSynthIn(t, t.TempDir(), suiteName, pattern, streams, nat)
}

// newSynthIn is newSynth writing its captures into dir.
func newSynthIn(t testing.TB, dir, suiteName, pattern string, streams int, nat bool) *synth {
	t.Helper()
	s := &synth{
		t: t, suite: proto.Suites[suiteName], nat: nat, rng: rand.New(rand.NewPCG(1, 2)),
		dir: dir, ts: time.Unix(1700000000, 0),
		senderPriv: [4]byte{10, 0, 1, 2}, receiver: [4]byte{10, 0, 2, 2}, natPub: [4]byte{10, 0, 2, 1},
		senderUDP: 4500, natUDP: 31337,
		seal: map[uint32]*sealer{}, espSeq: map[uint32]uint32{}, patKind: pattern, seed: 42,
	}
	if !nat {
		s.natPub, s.natUDP = s.senderPriv, s.senderUDP
	}
	key := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(s.rng.Uint32())
		}
		return b
	}
	ip := func(a [4]byte) string { return netipString(a) }
	s.dataSA = proto.SA{SPI: 0xc0de0001, EncKey: key(s.suite.EncKey), AuthKey: key(s.suite.AuthKey)}
	s.ackSA = proto.SA{SPI: 0xc0de0002, EncKey: key(s.suite.EncKey), AuthKey: key(s.suite.AuthKey)}
	sender := proto.ESPConfig{Suite: suiteName, Out: s.dataSA, In: s.ackSA}
	sender.Out.Src, sender.Out.Dst, sender.Out.SrcPort, sender.Out.DstPort = ip(s.senderPriv), ip(s.receiver), s.senderUDP, 4500
	sender.In.Src, sender.In.Dst, sender.In.SrcPort, sender.In.DstPort = ip(s.receiver), ip(s.senderPriv), 4500, s.senderUDP
	recv := proto.ESPConfig{Suite: suiteName, Out: s.ackSA, In: s.dataSA}
	recv.In.Src, recv.In.Dst, recv.In.SrcPort, recv.In.DstPort = ip(s.natPub), ip(s.receiver), s.natUDP, 4500
	recv.Out.Src, recv.Out.Dst, recv.Out.SrcPort, recv.Out.DstPort = ip(s.receiver), ip(s.natPub), 4500, s.natUDP
	s.keys = KeysFromConfigs(pattern, s.seed, streams, sender, recv)
	for _, sa := range []proto.SA{s.dataSA, s.ackSA} {
		s.seal[sa.SPI] = newSealer(s.suite, sa)
	}
	for i := 0; i < streams; i++ {
		s.streams = append(s.streams, &sstream{
			sport: uint16(40000 + i), dport: uint16(DefaultBasePort + i),
			isn: s.rng.Uint32(), risn: s.rng.Uint32(), pat: proto.NewPattern(pattern, s.seed, i),
		})
	}
	names := []string{"direct.pcap"}
	if nat {
		names = []string{"sender.pcap", "receiver.pcap"}
	}
	for _, n := range names {
		p := filepath.Join(s.dir, n)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		w := pcapgo.NewWriter(bw)
		if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		s.paths, s.files, s.bufs, s.ws = append(s.paths, p), append(s.files, f), append(s.bufs, bw), append(s.ws, w)
	}
	return s
}

func netipString(a [4]byte) string { return netip.AddrFrom4(a).String() }

// close flushes the captures and returns their paths.
func (s *synth) close() []string {
	for i := range s.files {
		if err := s.bufs[i].Flush(); err != nil {
			s.t.Fatal(err)
		}
		if err := s.files[i].Close(); err != nil {
			s.t.Fatal(err)
		}
	}
	return s.paths
}

// sealer encrypts like the Linux sender.
type sealer struct {
	suite proto.Suite
	spi   uint32
	block cipher.Block
	aead  cipher.AEAD
	salt  []byte
	mac   hash.Hash
	icv   int
	// replace is written over ciphertext block replaceIdx (pktOpt.cipherBlock).
	replace    []byte
	replaceIdx int
}

func newSealer(suite proto.Suite, sa proto.SA) *sealer {
	z := &sealer{suite: suite, spi: sa.SPI, icv: suite.ICVBits / 8}
	switch suite.Enc {
	case "cbc(aes)":
		z.block, _ = aes.NewCipher(sa.EncKey)
	case "rfc4106(gcm(aes))":
		b, _ := aes.NewCipher(sa.EncKey[:len(sa.EncKey)-4])
		z.aead, _ = cipher.NewGCM(b)
		z.salt = sa.EncKey[len(sa.EncKey)-4:]
	}
	switch suite.Auth {
	case "hmac(sha1)":
		z.mac = hmac.New(sha1.New, sa.AuthKey)
	case "hmac(sha256)":
		z.mac = hmac.New(sha256.New, sa.AuthKey)
	}
	return z
}

// seal returns the ESP packet (SPI to ICV) carrying inner with next header 6.
func (z *sealer) seal(seq uint32, inner []byte, rng *rand.Rand) []byte {
	align := max(z.suite.BlockLen, 4)
	padLen := (align - (len(inner)+2)%align) % align
	plain := make([]byte, 0, len(inner)+padLen+2)
	plain = append(plain, inner...)
	for i := 1; i <= padLen; i++ {
		plain = append(plain, byte(i))
	}
	plain = append(plain, byte(padLen), 6)
	hdr := make([]byte, 8, 8+z.suite.IVLen+len(plain)+16+z.icv)
	binary.BigEndian.PutUint32(hdr, z.spi)
	binary.BigEndian.PutUint32(hdr[4:], seq)
	switch {
	case z.aead != nil:
		iv := make([]byte, 8)
		binary.BigEndian.PutUint64(iv, rng.Uint64())
		nonce := append(append([]byte(nil), z.salt...), iv...)
		out := append(hdr, iv...)
		return z.aead.Seal(out, nonce, plain, hdr[:8])
	case z.block != nil:
		iv := make([]byte, 16)
		for i := range iv {
			iv[i] = byte(rng.Uint32())
		}
		out := append(hdr, iv...)
		ct := make([]byte, len(plain))
		cipher.NewCBCEncrypter(z.block, iv).CryptBlocks(ct, plain)
		if z.replace != nil {
			copy(ct[16*z.replaceIdx:], z.replace)
		}
		out = append(out, ct...)
		z.mac.Reset()
		z.mac.Write(out)
		return append(out, z.mac.Sum(nil)[:z.icv]...)
	default:
		out := append(hdr, plain...)
		z.mac.Reset()
		z.mac.Write(out)
		return append(out, z.mac.Sum(nil)[:z.icv]...)
	}
}

// tcpSegment builds a TCP header (with a timestamp option, as Linux sends)
// and payload, checksummed over the pseudo-header src, dst.
func tcpSegment(src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags byte, payload []byte) []byte {
	seg := make([]byte, 32+len(payload))
	binary.BigEndian.PutUint16(seg, sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], seq)
	binary.BigEndian.PutUint32(seg[8:], ack)
	seg[12] = 8 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 502)
	copy(seg[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	copy(seg[32:], payload)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksumRef(src, dst, seg))
	return seg
}

// tcpChecksumRef is a plain 16-bit RFC 1071 checksum, independent of the
// package's fast one.
func tcpChecksumRef(src, dst [4]byte, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	sum += 6 + uint32(len(seg))
	add(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// frame wraps an ESP packet in Ethernet, IPv4 and UDP.
func (s *synth) frame(src, dst [4]byte, sport, dport uint16, esp []byte) []byte {
	s.ipID++
	f := make([]byte, 14+20+8+len(esp))
	copy(f, []byte{0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00})
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(esp)))
	binary.BigEndian.PutUint16(ip[4:], s.ipID)
	ip[6] = 0x40
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ^uint16(fold64(onesSum(ip[:20]))))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp, sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(esp)))
	copy(udp[8:], esp)
	return f
}

func (s *synth) write(i int, f []byte) {
	s.ts = s.ts.Add(37 * time.Microsecond)
	ci := gopacket.CaptureInfo{Timestamp: s.ts, CaptureLength: len(f), Length: len(f)}
	if err := s.ws[i].WritePacket(ci, f); err != nil {
		s.t.Fatal(err)
	}
	s.frames[i]++
}

// writeRaw writes any frame (noise) to every capture.
func (s *synth) writeRaw(f []byte) {
	for i := range s.ws {
		s.write(i, f)
	}
}

// send puts one TCP segment on the wire in ESP: fromSender selects the data
// SA (sender -> receiver) or the ACK SA.
func (s *synth) send(fromSender bool, sport, dport uint16, seq, ack uint32, flags byte, payload []byte, o pktOpt) {
	p := append([]byte(nil), payload...)
	if o.corrupt >= 0 {
		p[o.corrupt] ^= 0x5a
	}
	var seg []byte
	sa := s.dataSA
	if fromSender {
		seg = tcpSegment(s.senderPriv, s.receiver, sport, dport, seq, ack, flags, p)
	} else {
		sa = s.ackSA
		seg = tcpSegment(s.receiver, s.natPub, sport, dport, seq, ack, flags, p)
	}
	if o.corruptAfter >= 0 {
		seg[32+o.corruptAfter] ^= 0x01
	}
	if o.badChecksum {
		seg[16] ^= 0xff
	}
	s.espSeq[sa.SPI]++
	s.seal[sa.SPI].replace, s.seal[sa.SPI].replaceIdx = o.cipherBlock, o.cipherIdx
	esp := s.seal[sa.SPI].seal(s.espSeq[sa.SPI], seg, s.rng)
	var up, down []byte
	if fromSender {
		up = s.frame(s.senderPriv, s.receiver, s.senderUDP, 4500, esp)
		down = s.frame(s.natPub, s.receiver, s.natUDP, 4500, esp)
	} else {
		up = s.frame(s.receiver, s.senderPriv, 4500, s.senderUDP, esp)
		down = s.frame(s.receiver, s.natPub, 4500, s.natUDP, esp)
	}
	if o.natFlip {
		down[len(down)-30] ^= 0x80
	}
	n := 1
	if o.dup {
		n = 2
	}
	for k := 0; k < n; k++ {
		// The sender's packets pass the sender-side capture first.
		if fromSender {
			if !o.skipUp {
				s.write(0, up)
			}
			if s.nat && !o.skipDown {
				s.write(1, down)
			}
		} else {
			if s.nat && !o.skipDown {
				s.write(1, down)
			}
			if !o.skipUp {
				s.write(0, up)
			}
		}
	}
}

// handshake sends SYN, SYN-ACK and ACK of stream i.
func (s *synth) handshake(i int, o pktOpt) {
	st := s.streams[i]
	s.send(true, st.sport, st.dport, st.isn, 0, tcpSYN, nil, o)
	s.send(false, st.dport, st.sport, st.risn, st.isn+1, tcpSYN|tcpACK, nil, o)
	s.send(true, st.sport, st.dport, st.isn+1, st.risn+1, tcpACK, nil, o)
}

// data sends n pattern bytes of stream i from offset off.
func (s *synth) data(i int, off int64, n int, o pktOpt) {
	st := s.streams[i]
	p := make([]byte, n)
	st.pat.Fill(p, off)
	s.send(true, st.sport, st.dport, st.isn+1+uint32(off), st.risn+1, tcpACK|0x08, p, o)
}

// ack acknowledges stream i up to offset off.
func (s *synth) ack(i int, off int64) {
	st := s.streams[i]
	s.send(false, st.dport, st.sport, st.risn+1, st.isn+1+uint32(off), tcpACK, nil, noOpt())
}

// fin closes stream i at offset off (both directions).
func (s *synth) fin(i int, off int64, o pktOpt) {
	st := s.streams[i]
	s.send(true, st.sport, st.dport, st.isn+1+uint32(off), st.risn+1, tcpACK|tcpFIN, nil, o)
	s.send(false, st.dport, st.sport, st.risn+1, st.isn+2+uint32(off), tcpACK|tcpFIN, nil, noOpt())
	s.send(true, st.sport, st.dport, st.isn+2+uint32(off), st.risn+2, tcpACK, nil, noOpt())
}

// stream sends a whole stream of total bytes in mss-sized segments, with
// per-segment options from opt (index -> option).
func (s *synth) stream(i int, total int64, mss int, opt map[int]pktOpt) {
	s.handshake(i, noOpt())
	seg := 0
	for off := int64(0); off < total; off += int64(mss) {
		n := int(min(int64(mss), total-off))
		o, ok := opt[seg]
		if !ok {
			o = noOpt()
		}
		s.data(i, off, n, o)
		if seg%2 == 1 {
			s.ack(i, off+int64(n))
		}
		seg++
	}
	s.fin(i, total, noOpt())
}
