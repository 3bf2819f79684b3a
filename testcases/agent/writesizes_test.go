package agent

import (
	"bytes"
	"io"
	"math"
	"net"
	"testing"

	"github.com/kbisect/kbisect/testcases/proto"
)

// TestWriteSizes: the sizes are 1..PatternBlock, log-uniform (as many
// below 256 bytes as above), the same for the same seed and stream, and
// not for another stream.
func TestWriteSizes(t *testing.T) {
	const n = 20000
	a, again, other := newWriteSizes(7, 0), newWriteSizes(7, 0), newWriteSizes(7, 1)
	var small, same int
	lo, hi := math.MaxInt, 0
	for i := 0; i < n; i++ {
		s := a.next()
		lo, hi = min(lo, s), max(hi, s)
		if s != again.next() {
			t.Fatalf("draw %d differs for the same seed and stream", i)
		}
		if s == other.next() {
			same++
		}
		if s <= 256 {
			small++
		}
	}
	if lo < 1 || hi > proto.PatternBlock || lo > 2 || hi < proto.PatternBlock/2 {
		t.Errorf("sizes %d..%d, want 1..%d, spanning it", lo, hi, proto.PatternBlock)
	}
	// log(257)/log(65537) = 0.4998
	if f := float64(small) / n; f < 0.47 || f > 0.53 {
		t.Errorf("%.3f of the sizes are <= 256 bytes, want 0.50 (log-uniform)", f)
	}
	if same > n/20 {
		t.Errorf("stream 1 drew the same size as stream 0 %d times in %d", same, n)
	}
}

// TestWriteRecord sends a pattern in varied writes with MSG_EOR through a
// real TCP connection whose send buffer is small (so that writes block and
// come back partial) and checks that every byte arrives in order.
func TestWriteRecord(t *testing.T) {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := make([]byte, 4<<20)
	proto.NewPattern("prng", 3, 0).Fill(want, 0)
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.DialTCP("tcp4", nil, l.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteBuffer(4096)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	sizes := newWriteSizes(1, 0)
	for off := 0; off < len(want); {
		n, err := writeRecord(rc, want[off:min(len(want), off+sizes.next())])
		if err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		off += n
	}
	c.CloseWrite()
	b := <-got
	c.Close()
	if !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, want the %d sent, in order", len(b), len(want))
	}
}
