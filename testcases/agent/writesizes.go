package agent

import (
	"errors"
	"math"
	"math/rand/v2"
	"syscall"

	"github.com/kbisect/kbisect/testcases/proto"
	"golang.org/x/sys/unix"
)

// writeSizes draws the sizes of a stream's writes (proto.WriteSizesVary):
// log-uniform from 1 byte to proto.PatternBlock, so that every order of
// magnitude of the tail of a TCP segment is as likely, from one seed.
type writeSizes struct {
	rng *rand.Rand
}

func newWriteSizes(seed uint64, stream int) *writeSizes {
	return &writeSizes{rng: rand.New(rand.NewPCG(seed, uint64(stream)+0x77726974))}
}

// next returns the size of the next write, 1..proto.PatternBlock.
func (w *writeSizes) next() int {
	n := int(math.Exp(w.rng.Float64() * math.Log(proto.PatternBlock+1)))
	return min(max(n, 1), proto.PatternBlock)
}

// writeRecord writes b with MSG_EOR: TCP appends no later write to the
// segment that carries b's last byte, so b's size shows on the wire. (Go's
// net package has no way to pass send flags; a RawConn keeps the runtime's
// poller and the connection's deadlines.) Kernels before 4.7 ignore the
// flag and may coalesce writes.
func writeRecord(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	for n < len(b) {
		var serr error
		err := rc.Write(func(fd uintptr) bool {
			var k int
			for {
				k, serr = unix.SendmsgN(int(fd), b[n:], nil, nil, unix.MSG_EOR|unix.MSG_NOSIGNAL)
				if !errors.Is(serr, unix.EINTR) {
					break
				}
			}
			if errors.Is(serr, unix.EAGAIN) {
				return false // the poller waits until the socket takes more
			}
			n += max(k, 0)
			return true
		})
		if err != nil {
			return n, err
		}
		if serr != nil {
			return n, serr
		}
	}
	return n, nil
}
