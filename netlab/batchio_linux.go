package netlab

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many frames one recvmmsg/sendmmsg moves at most.
const batchSize = 32

// drainBatches bounds the batches read after Close asked a reader to stop,
// so that a peer that keeps sending cannot hold Close up.
const drainBatches = 64

// Size of the control buffer that receives one SCM_TIMESTAMPNS message.
var tsSpace = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// frameBatch is a set of reusable frame buffers and the kernel structures
// that let one system call fill or send all of them. It never allocates
// after newFrameBatch.
type frameBatch struct {
	bufs [][]byte
	iov  []unix.Iovec
	hdr  []unix.Mmsghdr
	oob  []byte

	// Results of the last recv, for frames [0, n).
	n     int
	lens  []int   // length on the wire; more than len(bufs[i]) if truncated
	stamp []int64 // kernel receive time (ns since epoch), 0 if none

	// Outgoing frames for send, built by queue.
	outIov  []unix.Iovec
	out     []unix.Mmsghdr
	outSlot []int // slot of each queued frame
	nout    int
}

func newFrameBatch(slots, size int, timestamps bool) *frameBatch {
	b := &frameBatch{
		bufs:    make([][]byte, slots),
		iov:     make([]unix.Iovec, slots),
		hdr:     make([]unix.Mmsghdr, slots),
		lens:    make([]int, slots),
		stamp:   make([]int64, slots),
		outIov:  make([]unix.Iovec, slots),
		out:     make([]unix.Mmsghdr, slots),
		outSlot: make([]int, slots),
	}
	mem := make([]byte, slots*size)
	if timestamps {
		b.oob = make([]byte, slots*tsSpace)
	}
	for i := range b.bufs {
		b.bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
		b.iov[i].Base = &b.bufs[i][0]
		b.hdr[i].Hdr.Iov = &b.iov[i]
		b.hdr[i].Hdr.Iovlen = 1
		b.out[i].Hdr.Iov = &b.outIov[i]
		b.out[i].Hdr.Iovlen = 1
		if timestamps {
			b.hdr[i].Hdr.Control = &b.oob[i*tsSpace]
		}
	}
	return b
}

// frame returns frame i of the last recv (truncated to its buffer).
func (b *frameBatch) frame(i int) []byte {
	n := b.lens[i]
	if n > len(b.bufs[i]) {
		n = len(b.bufs[i])
	}
	return b.bufs[i][:n]
}

// time returns the receive time of frame i.
func (b *frameBatch) time(i int, fallback time.Time) time.Time {
	if b.stamp[i] == 0 {
		return fallback
	}
	return time.Unix(0, b.stamp[i])
}

// queue adds frame i of the last recv, cut to n bytes, to the frames to send.
func (b *frameBatch) queue(i, n int) {
	b.outIov[b.nout].Base = &b.bufs[i][0]
	b.outIov[b.nout].SetLen(n)
	b.outSlot[b.nout] = i
	b.nout++
}

// prepare resets the receive headers before a recvmmsg.
func (b *frameBatch) prepare() {
	for i := range b.hdr {
		h := &b.hdr[i]
		b.iov[i].SetLen(len(b.bufs[i]))
		h.Hdr.Flags = 0
		h.Len = 0
		if b.oob != nil {
			h.Hdr.SetControllen(tsSpace)
		}
	}
	b.nout = 0
}

// finish reads lengths and timestamps after a recvmmsg of n frames.
func (b *frameBatch) finish(n int) {
	b.n = n
	for i := 0; i < n; i++ {
		b.lens[i] = int(b.hdr[i].Len)
		b.stamp[i] = 0
		if cl := int(b.hdr[i].Hdr.Controllen); b.oob != nil && cl >= unix.CmsgLen(0) && cl <= tsSpace {
			b.stamp[i] = parseTimestampNS(b.oob[i*tsSpace : i*tsSpace+cl])
		}
	}
}

// parseTimestampNS finds an SCM_TIMESTAMPNS message without allocating.
func parseTimestampNS(oob []byte) int64 {
	hlen := unix.CmsgLen(0)
	for len(oob) >= hlen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hlen || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hlen+int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hlen]))
			return ts.Nano()
		}
		oob = oob[unix.CmsgSpace(l-hlen):]
	}
	return 0
}

// batchConn moves frameBatches over a non-blocking socket through the Go
// poller, so a deadline stops a blocked reader or writer.
type batchConn struct {
	f  *os.File
	rc syscall.RawConn

	// State for readFn and writeFn, which are built once so that a call
	// does not allocate a closure.
	b       *frameBatch
	rn      int
	rerr    syscall.Errno
	wq      []unix.Mmsghdr
	wn      int
	werr    syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool

	stopping atomic.Bool
}

// newBatchConn takes ownership of fd, which must be non-blocking.
func newBatchConn(fd int, name string) (*batchConn, error) {
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlab: %s: %w", name, err)
	}
	c := &batchConn{f: f, rc: rc}
	c.readFn = c.doRead
	c.writeFn = c.doWrite
	return c, nil
}

func (c *batchConn) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.b.hdr[0])),
			uintptr(len(c.b.hdr)), unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		switch e {
		case 0:
			c.rn, c.rerr = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.rn, c.rerr = 0, e
		return true
	}
}

func (c *batchConn) doWrite(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.wq[0])),
			uintptr(len(c.wq)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			c.wn, c.werr = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			return false
		}
		c.wn, c.werr = 0, e
		return true
	}
}

// errStopped says a reader was asked to stop and has drained its socket,
// or a writer was asked to stop and the socket had no room left.
var errStopped = errors.New("stopped")

// recv fills b with at least one frame. Once stop was called it reads what
// is queued without waiting, and returns errStopped when nothing is left.
func (c *batchConn) recv(b *frameBatch) error {
	b.prepare()
	c.b = b
	defer func() { c.b = nil }()
	if !c.stopping.Load() {
		err := c.rc.Read(c.readFn)
		switch {
		case err == nil:
			if c.rerr != 0 {
				return c.rerr
			}
			b.finish(c.rn)
			return nil
		case errors.Is(err, os.ErrClosed):
			return errStopped
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return err
		}
		// stop was called while we waited: drain below.
	}
	ready := false
	if err := c.rc.Control(func(fd uintptr) { ready = c.doRead(fd) }); err != nil {
		return errStopped
	}
	if !ready {
		return errStopped
	}
	if c.rerr != 0 {
		return c.rerr
	}
	b.finish(c.rn)
	return nil
}

// send writes the frames queued in b. Frames the socket refuses for good
// (not for lack of room) are skipped and counted in refused. Once stop was
// called it does not wait for room: what does not fit is dropped and it
// returns errStopped.
func (c *batchConn) send(b *frameBatch) (refused int, err error) {
	q := b.out[:b.nout]
	defer func() { c.wq = nil }()
	for len(q) > 0 {
		c.wq = q
		if !c.stopping.Load() {
			err = c.rc.Write(c.writeFn)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				if errors.Is(err, os.ErrClosed) {
					return refused + len(q), errStopped
				}
				return refused, err
			}
		}
		if c.stopping.Load() || err != nil {
			ready := false
			if c.rc.Control(func(fd uintptr) { ready = c.doWrite(fd) }) != nil || !ready {
				return refused + len(q), errStopped
			}
		}
		if c.werr != 0 {
			refused++
			q = q[1:]
			continue
		}
		q = q[c.wn:]
	}
	return refused, nil
}

// stop makes recv and send stop waiting: recv drains what is queued, then
// both return errStopped.
func (c *batchConn) stop() {
	c.stopping.Store(true)
	c.f.SetDeadline(time.Now())
}

func (c *batchConn) close() error { return c.f.Close() }
