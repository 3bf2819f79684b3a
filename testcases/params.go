package testcases

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/kbisect/kbisect/testcases/proto"
)

// Addressing is where the two guests sit on the wire: guest 0 (the sender)
// possibly behind a NAT, guest 1 the receiver.
type Addressing struct {
	// Addr and Gateway of each guest (CIDR, plain address or empty).
	Addr    [2]string
	Gateway [2]string
	// PeerView[i] is the other guest's address as guest i sees it; behind
	// a NAT, the receiver sees the NAT's outside address.
	PeerView [2]string
	// MAC, if set, is each guest's hardware address, set by its agent
	// (remote executors whose guests would otherwise share one).
	MAC [2]string
}

// sessionKeys draws fresh SPIs and keys for one run: each run gets its own,
// from the host's CSPRNG, so no two runs' captures share keys.
func sessionKeys(suite proto.Suite) (out, in proto.SA, err error) {
	var spis [8]byte
	if _, err = rand.Read(spis[:]); err != nil {
		return out, in, fmt.Errorf("draw SPIs: %w", err)
	}
	// SPIs 1-255 are reserved (RFC 4303); keep them clear of it.
	out.SPI = binary.BigEndian.Uint32(spis[:4]) | 0x1000
	in.SPI = binary.BigEndian.Uint32(spis[4:]) | 0x1000
	if in.SPI == out.SPI {
		in.SPI ^= 0x100
	}
	for _, sa := range []*proto.SA{&out, &in} {
		sa.EncKey = make([]byte, suite.EncKey)
		sa.AuthKey = make([]byte, suite.AuthKey)
		if _, err = rand.Read(sa.EncKey); err != nil {
			return out, in, fmt.Errorf("draw keys: %w", err)
		}
		if _, err = rand.Read(sa.AuthKey); err != nil {
			return out, in, fmt.Errorf("draw keys: %w", err)
		}
	}
	return out, in, nil
}

// espConfigs returns the two guests' views of one SA pair. fwd protects the
// sender's data, rev the receiver's ACKs. The sender knows every port (4500
// both ways); the receiver learns the port the NAT chose from the sender's
// hello, so its ports on that side are left 0.
func espConfigs(suite proto.Suite, a Addressing, fwd, rev proto.SA) [2]*proto.ESPConfig {
	addr := func(s string) string { return stripPrefix(s) }
	senderOut, senderIn := fwd, rev
	senderOut.Src, senderOut.Dst = addr(a.Addr[0]), a.PeerView[0]
	senderOut.SrcPort, senderOut.DstPort = 4500, 4500
	senderIn.Src, senderIn.Dst = a.PeerView[0], addr(a.Addr[0])
	senderIn.SrcPort, senderIn.DstPort = 4500, 4500

	recvIn, recvOut := fwd, rev
	recvIn.Src, recvIn.Dst = a.PeerView[1], addr(a.Addr[1])
	recvIn.SrcPort, recvIn.DstPort = 0, 4500
	recvOut.Src, recvOut.Dst = addr(a.Addr[1]), a.PeerView[1]
	recvOut.SrcPort, recvOut.DstPort = 4500, 0
	return [2]*proto.ESPConfig{
		{Suite: suite.Name, Out: senderOut, In: senderIn},
		{Suite: suite.Name, Out: recvOut, In: recvIn},
	}
}

func stripPrefix(cidr string) string {
	for i := 0; i < len(cidr); i++ {
		if cidr[i] == '/' {
			return cidr[:i]
		}
	}
	return cidr
}
