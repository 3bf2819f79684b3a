package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// NAT-T port and the socket options that make a UDP socket decapsulate
// ESP-in-UDP (RFC 3948). Without UDP_ENCAP on a socket bound to 4500 the
// kernel hands ESP-in-UDP to the socket as plain data.
const (
	nattPort          = 4500
	solUDP            = 17
	udpEncap          = 100
	udpEncapESPinUDP  = 2
	reqID             = 0x4b42
	helloMsg          = "KBISECT-HELLO"
	ackMsg            = "KBISECT-ACK"
	helloInterval     = 100 * time.Millisecond
	helloGiveUp       = 2 * time.Minute
	xfrmInf           = ^uint64(0)
	nonESPMarkerBytes = 4
)

// espSetup is what setupESP installed.
type espSetup struct {
	conn  *net.UDPConn
	suite proto.Suite
	out   proto.SA
	in    proto.SA
}

// setupESP opens the NAT-T socket, learns the NAT's mapping with an
// IKE-like hello (sent with the non-ESP marker, so the kernel passes it to
// the socket), and installs the SAs and policies for TCP between the two
// guests in transport mode.
func setupESP(ctx context.Context, p *proto.Params) (*espSetup, error) {
	// Ask for the kernel's extended ack (it names what it refused) where
	// the kernel has it: before 4.12 the socket option fails with
	// ENOPROTOOPT, and so would every netlink request.
	nl.EnableErrorMessageReporting = hasExtAck()
	suite, ok := proto.Suites[p.ESP.Suite]
	if !ok {
		return nil, fmt.Errorf("unknown crypto suite %q", p.ESP.Suite)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: nattPort})
	if err != nil {
		return nil, fmt.Errorf("NAT-T socket on port %d: %w", nattPort, err)
	}
	if err := setEncap(conn); err != nil {
		conn.Close()
		return nil, err
	}
	s := &espSetup{conn: conn, suite: suite, out: p.ESP.Out, in: p.ESP.In}
	if p.Role == proto.RoleReceiver {
		err = s.receiverHandshake(ctx, p)
	} else {
		err = s.senderHandshake(ctx, p)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func setEncap(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), solUDP, udpEncap, udpEncapESPinUDP)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt UDP_ENCAP=ESPINUDP: %w (kernel without CONFIG_XFRM/INET_ESP NAT-T support?)", serr)
	}
	return nil
}

// senderHandshake sends hellos until the receiver acknowledges, then
// installs its SAs: the receiver installed its own before acknowledging, so
// the first SYN finds them.
func (s *espSetup) senderHandshake(ctx context.Context, p *proto.Params) error {
	peer := &net.UDPAddr{IP: net.ParseIP(p.Peer), Port: nattPort}
	if peer.IP == nil {
		return fmt.Errorf("peer %q is not an IP address", p.Peer)
	}
	hello := append(make([]byte, nonESPMarkerBytes), helloMsg...)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(helloGiveUp)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := s.conn.WriteToUDP(hello, peer); err != nil && !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH) {
			return fmt.Errorf("send hello to %v: %w", peer, err)
		}
		s.conn.SetReadDeadline(time.Now().Add(helloInterval))
		n, _, err := s.conn.ReadFromUDP(buf)
		if err == nil && bytes.Equal(buf[:n], append(make([]byte, nonESPMarkerBytes), ackMsg...)) {
			s.conn.SetReadDeadline(time.Time{})
			return s.install(p.ESP.LegacyAuth)
		}
	}
	return fmt.Errorf("no answer from the receiver at %v:%d for %v", peer.IP, nattPort, helloGiveUp)
}

// receiverHandshake waits for the sender's hello, learns the address and
// port the NAT gave it, installs the SAs and acknowledges. It keeps
// acknowledging repeated hellos in the background.
func (s *espSetup) receiverHandshake(ctx context.Context, p *proto.Params) error {
	buf := make([]byte, 1500)
	s.conn.SetReadDeadline(time.Now().Add(helloGiveUp))
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return fmt.Errorf("no hello from the sender in %v: %w", helloGiveUp, err)
		}
		if !bytes.Equal(buf[:n], append(make([]byte, nonESPMarkerBytes), helloMsg...)) {
			continue
		}
		if s.in.Src != "" && s.in.Src != from.IP.String() {
			return fmt.Errorf("sender's hello came from %v, expected %s: is the NAT rewriting as planned?", from.IP, s.in.Src)
		}
		s.in.Src, s.out.Dst = from.IP.String(), from.IP.String()
		if s.in.SrcPort == 0 {
			s.in.SrcPort = uint16(from.Port)
		}
		if s.out.DstPort == 0 {
			s.out.DstPort = uint16(from.Port)
		}
		if err := s.install(p.ESP.LegacyAuth); err != nil {
			return err
		}
		ack := append(make([]byte, nonESPMarkerBytes), ackMsg...)
		s.conn.WriteToUDP(ack, from)
		s.conn.SetReadDeadline(time.Time{})
		go func() {
			for {
				n, from, err := s.conn.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if bytes.Equal(buf[:n], append(make([]byte, nonESPMarkerBytes), helloMsg...)) {
					s.conn.WriteToUDP(ack, from)
				}
			}
		}()
		return nil
	}
}

// install adds both SAs and both policies, then checks that the kernel runs
// what was asked. Kernels before 2.6.33 ignore XFRMA_ALG_AUTH_TRUNC and
// silently run without integrity; for those it retries with XFRMA_ALG_AUTH.
func (s *espSetup) install(legacy bool) error {
	for _, sa := range []proto.SA{s.out, s.in} {
		if err := s.addState(sa, legacy); err != nil {
			return err
		}
	}
	if !legacy && s.suite.Auth != "" && !s.authInstalled() {
		for _, sa := range []proto.SA{s.out, s.in} {
			netlink.XfrmStateDel(&netlink.XfrmState{Src: net.ParseIP(sa.Src), Dst: net.ParseIP(sa.Dst), Proto: netlink.XFRM_PROTO_ESP, Spi: int(sa.SPI)})
		}
		return s.install(true)
	}
	if s.suite.Auth != "" && !s.authInstalled() {
		return fmt.Errorf("the kernel installed the SAs without %s: integrity would not be checked", s.suite.Auth)
	}
	for _, pol := range []struct {
		sa  proto.SA
		dir netlink.Dir
	}{{s.out, netlink.XFRM_DIR_OUT}, {s.in, netlink.XFRM_DIR_IN}} {
		src, dst := net.ParseIP(pol.sa.Src), net.ParseIP(pol.sa.Dst)
		err := netlink.XfrmPolicyAdd(&netlink.XfrmPolicy{
			Src:   &net.IPNet{IP: src, Mask: net.CIDRMask(32, 32)},
			Dst:   &net.IPNet{IP: dst, Mask: net.CIDRMask(32, 32)},
			Proto: netlink.Proto(unix.IPPROTO_TCP),
			Dir:   pol.dir,
			Tmpls: []netlink.XfrmPolicyTmpl{{Src: src, Dst: dst, Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TRANSPORT, Reqid: reqID}},
		})
		if err != nil {
			return fmt.Errorf("add %v policy %s -> %s: %w", pol.dir, src, dst, err)
		}
	}
	return nil
}

// hasExtAck reports whether netlink sockets take NETLINK_EXT_ACK (4.12).
func hasExtAck() bool {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1) == nil
}

// addState sends XFRM_MSG_NEWSA itself rather than through
// netlink.XfrmStateAdd, which always uses XFRMA_ALG_AUTH_TRUNC (unknown to
// 2.6.32).
func (s *espSetup) addState(sa proto.SA, legacy bool) error {
	src, dst := net.ParseIP(sa.Src), net.ParseIP(sa.Dst)
	if src == nil || dst == nil {
		return fmt.Errorf("SA %#x: bad addresses %q -> %q", sa.SPI, sa.Src, sa.Dst)
	}
	msg := &nl.XfrmUsersaInfo{Family: unix.AF_INET, Mode: uint8(netlink.XFRM_MODE_TRANSPORT), Reqid: reqID, ReplayWindow: 32}
	msg.Id.Daddr.FromIP(dst)
	msg.Saddr.FromIP(src)
	msg.Id.Proto = uint8(netlink.XFRM_PROTO_ESP)
	msg.Id.Spi = nl.Swap32(sa.SPI)
	msg.Lft.SoftByteLimit, msg.Lft.HardByteLimit = xfrmInf, xfrmInf
	msg.Lft.SoftPacketLimit, msg.Lft.HardPacketLimit = xfrmInf, xfrmInf
	req := nl.NewNetlinkRequest(nl.XFRM_MSG_NEWSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(msg)
	if s.suite.AEAD {
		a := nl.XfrmAlgoAEAD{AlgKeyLen: uint32(len(sa.EncKey) * 8), AlgICVLen: uint32(s.suite.ICVBits), AlgKey: sa.EncKey}
		copy(a.AlgName[:], s.suite.Enc)
		req.AddData(nl.NewRtAttr(nl.XFRMA_ALG_AEAD, a.Serialize()))
	} else {
		c := nl.XfrmAlgo{AlgKeyLen: uint32(len(sa.EncKey) * 8), AlgKey: sa.EncKey}
		copy(c.AlgName[:], s.suite.Enc)
		req.AddData(nl.NewRtAttr(nl.XFRMA_ALG_CRYPT, c.Serialize()))
		if legacy {
			a := nl.XfrmAlgo{AlgKeyLen: uint32(len(sa.AuthKey) * 8), AlgKey: sa.AuthKey}
			copy(a.AlgName[:], s.suite.Auth)
			req.AddData(nl.NewRtAttr(nl.XFRMA_ALG_AUTH, a.Serialize()))
		} else {
			a := nl.XfrmAlgoAuth{AlgKeyLen: uint32(len(sa.AuthKey) * 8), AlgTruncLen: uint32(s.suite.ICVBits), AlgKey: sa.AuthKey}
			copy(a.AlgName[:], s.suite.Auth)
			req.AddData(nl.NewRtAttr(nl.XFRMA_ALG_AUTH_TRUNC, a.Serialize()))
		}
	}
	encap := make([]byte, nl.SizeofXfrmEncapTmpl)
	e := nl.DeserializeXfrmEncapTmpl(encap)
	e.EncapType = uint16(netlink.XFRM_ENCAP_ESPINUDP)
	e.EncapSport = nl.Swap16(sa.SrcPort)
	e.EncapDport = nl.Swap16(sa.DstPort)
	req.AddData(nl.NewRtAttr(nl.XFRMA_ENCAP, encap))
	// The kernel waits up to 60 s for a crypto instance to be made and
	// self-tested (crypto_larval_wait) before it answers; netlink's own 60 s
	// receive timeout would turn that answer into EAGAIN. Wait longer, so
	// that the kernel's own error is what the run reports.
	nl.SocketTimeoutTv = unix.Timeval{Sec: 150}
	if _, err := req.Execute(unix.NETLINK_XFRM, 0); err != nil {
		return fmt.Errorf("add SA %#x %s:%d -> %s:%d (%s): %w%s", sa.SPI, sa.Src, sa.SrcPort, sa.Dst, sa.DstPort, s.suite.Name, err, missingFeature(err, s.suite))
	}
	return nil
}

// missingFeature turns the kernel's refusal of an SA into the config option
// it most likely lacks.
func missingFeature(err error, suite proto.Suite) string {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT):
		fd, serr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_XFRM)
		if serr != nil {
			return ": the kernel has no XFRM netlink interface (CONFIG_XFRM_USER)"
		}
		unix.Close(fd)
		return ": the kernel has no ESP (CONFIG_INET_ESP)"
	case errors.Is(err, unix.ENOSYS):
		return fmt.Sprintf(": the kernel does not know %s/%s (CONFIG_CRYPTO_*)", suite.Enc, suite.Auth)
	case errors.Is(err, unix.ENOENT):
		return fmt.Sprintf(": the kernel cannot instantiate %s with %s (a crypto template, or stdrng for the IV generator, is missing)", suite.Enc, suite.Auth)
	case errors.Is(err, unix.ETIMEDOUT):
		return fmt.Sprintf(": the kernel's crypto API waited 60 s for %s with %s to be made and self-tested, in vain (crypto_larval_wait)", suite.Enc, suite.Auth)
	case errors.Is(err, unix.EAGAIN):
		return ": the kernel did not answer in 150 s"
	}
	return ""
}

// authInstalled reports whether every installed SA carries the integrity
// algorithm.
func (s *espSetup) authInstalled() bool {
	states, err := netlink.XfrmStateList(unix.AF_INET)
	if err != nil || len(states) == 0 {
		return false
	}
	for _, st := range states {
		if st.Auth == nil || st.Auth.Name != s.suite.Auth {
			return false
		}
	}
	return true
}

// forgeBadICV sends the peer one ESP-in-UDP packet of the outbound SA with
// random contents: a sequence number far ahead (the replay check passes) and
// an ICV that cannot verify, so the peer's kernel drops it and counts an
// integrity failure (the auth self-test, proto.InjectAuth).
func (s *espSetup) forgeBadICV() error {
	peer := &net.UDPAddr{IP: net.ParseIP(s.out.Dst), Port: int(s.out.DstPort)}
	if s.out.DstPort == 0 {
		peer.Port = nattPort
	}
	pkt := make([]byte, 8+s.suite.IVLen+4*max(s.suite.BlockLen, 4)+s.suite.ICVBits/8)
	binary.BigEndian.PutUint32(pkt, s.out.SPI)
	binary.BigEndian.PutUint32(pkt[4:], 0x7fff0000)
	for i := 8; i < len(pkt); i++ {
		pkt[i] = byte(i * 167)
	}
	_, err := s.conn.WriteToUDP(pkt, peer)
	return err
}

// stopOnAuthFailure calls stop when the kernel has dropped an ESP packet
// for a bad ICV (it polls the SAs' counters twice a second) and says so.
func (s *espSetup) stopOnAuthFailure(ctx context.Context, stop func(), send Send, role string) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, n := s.describe(); n > 0 {
			send(proto.Event{Type: "log", Role: role, Message: fmt.Sprintf("%d ESP packet(s) failed authentication: stopping", n)})
			stop()
			return
		}
	}
}

// describe returns the kernel's view of the SAs, one line each, the number
// of packets they processed and the number of inbound packets the kernel
// dropped because their ICV did not verify (the SAs' integrity_failed).
func (s *espSetup) describe() (lines []string, pkts, authFailures int64) {
	states, err := netlink.XfrmStateList(unix.AF_INET)
	if err != nil {
		return []string{"cannot list SAs: " + err.Error()}, 0, 0
	}
	for _, st := range states {
		line := fmt.Sprintf("src %v dst %v proto esp spi 0x%08x mode %v", st.Src, st.Dst, uint32(st.Spi), st.Mode)
		if st.Aead != nil {
			line += fmt.Sprintf(" aead %s icv %d", st.Aead.Name, st.Aead.ICVLen)
		}
		if st.Crypt != nil {
			line += fmt.Sprintf(" enc %s", st.Crypt.Name)
		}
		if st.Auth != nil {
			line += fmt.Sprintf(" auth %s trunc %d", st.Auth.Name, st.Auth.TruncateLen)
		}
		if st.Encap != nil {
			line += fmt.Sprintf(" encap espinudp %d %d", st.Encap.SrcPort, st.Encap.DstPort)
		}
		line += fmt.Sprintf(" packets %d bytes %d integrity-failed %d", st.Statistics.Packets, st.Statistics.Bytes, st.Statistics.Failed)
		lines = append(lines, line)
		pkts += int64(st.Statistics.Packets)
		authFailures += int64(st.Statistics.Failed)
	}
	return lines, pkts, authFailures
}
