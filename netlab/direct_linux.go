package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Address plan of the direct topology.
const (
	directAddrA = "198.18.0.1/24"
	directAddrB = "198.18.0.2/24"
	directIPA   = "198.18.0.1"
	directIPB   = "198.18.0.2"
	macA        = "02:6b:62:00:00:0a"
	macB        = "02:6b:62:00:00:0b"
)

// direct is two socketpairs joined by a relay in this process.
type direct struct {
	g     [2]Endpoint
	relay [2]*batchConn // relay[i] is the other end of guest i's socket
	pcap  *pcapFile
	fault *faultState

	wg      sync.WaitGroup
	counter [2]struct{ frames, bytes, dropped atomic.Uint64 }
	errMu   sync.Mutex
	err     error
}

func newDirect(o Options) (_ *direct, err error) {
	d := &direct{fault: newFaultState(o.Fault)}
	defer func() {
		if err != nil {
			d.release()
		}
	}()
	if o.CaptureDir != "" {
		if d.pcap, err = createPcap(filepath.Join(o.CaptureDir, "wire.pcap"), o.Snaplen); err != nil {
			return nil, err
		}
	}
	addrs := [2]string{directAddrA, directAddrB}
	peers := [2]string{directIPB, directIPA}
	macs := [2]string{macA, macB}
	for i := range d.g {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("netlab: socketpair for guest %d: %w", i, err)
		}
		d.g[i] = Endpoint{
			Kind:     KindDgram,
			File:     os.NewFile(uintptr(fds[0]), fmt.Sprintf("netlab-guest%d", i)),
			MAC:      macs[i],
			Addr:     addrs[i],
			PeerView: peers[i],
			MTU:      o.MTU,
		}
		if d.pcap != nil {
			if err := unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
				unix.Close(fds[1])
				return nil, fmt.Errorf("netlab: relay socket %d: SO_TIMESTAMPNS: %w", i, err)
			}
		}
		if d.relay[i], err = newBatchConn(fds[1], fmt.Sprintf("netlab-relay%d", i)); err != nil {
			return nil, err
		}
	}
	for i := range 2 {
		b := newFrameBatch(batchSize, maxFrame, d.pcap != nil)
		d.wg.Add(1)
		go d.run(Direction(i), d.relay[i], d.relay[1-i], b)
	}
	return d, nil
}

// run forwards the frames guest dir sends (read on src) to the other guest
// (written on dst) until stopped.
func (d *direct) run(dir Direction, src, dst *batchConn, b *frameBatch) {
	defer d.wg.Done()
	c := &d.counter[dir]
	drained := 0
	for {
		if err := src.recv(b); err != nil {
			if !errors.Is(err, errStopped) {
				d.setErr(fmt.Errorf("netlab: relay %s: read: %w", dir, err))
			}
			return
		}
		if src.stopping.Load() {
			if drained++; drained > drainBatches {
				return
			}
		}
		var bytes, dropped uint64
		for i := 0; i < b.n; i++ {
			n := b.lens[i]
			bytes += uint64(n)
			if n > len(b.bufs[i]) {
				dropped++ // never forward a truncated frame
				continue
			}
			if d.fault != nil && d.fault.apply(dir, b.bufs[i][:n]) {
				continue
			}
			b.queue(i, n)
		}
		c.frames.Add(uint64(b.n))
		c.bytes.Add(bytes)
		if d.pcap != nil {
			d.capture(b)
		}
		refused, err := dst.send(b)
		if dropped+uint64(refused) > 0 {
			c.dropped.Add(dropped + uint64(refused))
		}
		if err != nil {
			if !errors.Is(err, errStopped) {
				d.setErr(fmt.Errorf("netlab: relay %s: write: %w", dir, err))
			}
			return
		}
	}
}

// capture records the frames queued for sending, as they will be delivered.
func (d *direct) capture(b *frameBatch) {
	now := time.Now()
	p := d.pcap
	p.mu.Lock()
	for k := 0; k < b.nout; k++ {
		i := b.outSlot[k]
		frame := b.bufs[i][:b.outIov[k].Len]
		p.writeLocked(b.time(i, now), frame, len(frame))
	}
	p.mu.Unlock()
}

func (d *direct) setErr(err error) {
	d.errMu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.errMu.Unlock()
}

func (d *direct) endpoints() [2]Endpoint { return d.g }

func (d *direct) mappings() ([]Mapping, error) { return nil, nil }

func (d *direct) captures() []string {
	if d.pcap == nil {
		return nil
	}
	return []string{d.pcap.path}
}

func (d *direct) stats() (Stats, error) {
	var s Stats
	for i, c := range []*Counter{&s.AtoB, &s.BtoA} {
		c.Frames = d.counter[i].frames.Load()
		c.Bytes = d.counter[i].bytes.Load()
		s.Dropped += d.counter[i].dropped.Load()
	}
	if d.fault != nil {
		s.Faults = d.fault.hits.Load()
	}
	if d.pcap != nil {
		s.CaptureDrops = d.pcap.dropCount()
	}
	return s, nil
}

func (d *direct) close() (Stats, error) {
	for _, r := range d.relay {
		if r != nil {
			r.stop()
		}
	}
	d.wg.Wait()
	s, _ := d.stats()
	err := d.release()
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return s, errors.Join(d.err, err)
}

// release closes every file; it is safe on a half-built direct.
func (d *direct) release() error {
	var errs []error
	if d.pcap != nil {
		errs = append(errs, d.pcap.close())
	}
	for i := range 2 {
		if d.relay[i] != nil {
			d.relay[i].close()
			d.relay[i] = nil
		}
		if d.g[i].File != nil {
			d.g[i].File.Close()
		}
	}
	return errors.Join(errs...)
}
