package netlab

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// A capture fills 1 MiB buffers in memory and a goroutine of its own writes
// them to the file, so the relay never waits for the disk unless the disk
// falls pcapBuffers MiB behind (then it waits rather than lose frames).
const (
	pcapBufSize = 1 << 20
	pcapBuffers = 8
)

// pcapFile is one capture file (Ethernet linktype, nanosecond timestamps)
// written by pcapgo. Callers of writeLocked hold mu.
type pcapFile struct {
	path    string
	snaplen int

	mu    sync.Mutex
	w     *pcapgo.Writer
	bw    bufferedFile
	drops uint64
	err   error // first write error, after which frames count as drops
}

// bufferedFile is the io.Writer under pcapgo: it appends to cur and hands
// full buffers to the writer goroutine.
type bufferedFile struct {
	cur   []byte
	spare int // buffers not allocated yet
	free  chan []byte
	full  chan []byte
	done  chan error // the writer goroutine's result
}

func (b *bufferedFile) Write(p []byte) (int, error) {
	if len(b.cur)+len(p) > cap(b.cur) && len(b.cur) > 0 {
		b.full <- b.cur
		select {
		case b.cur = <-b.free:
		default:
			if b.spare > 0 {
				b.spare--
				b.cur = make([]byte, 0, pcapBufSize)
			} else {
				b.cur = <-b.free // the disk is pcapBuffers MiB behind
			}
		}
	}
	b.cur = append(b.cur, p...) // a frame bigger than a buffer grows it once
	return len(p), nil
}

func createPcap(path string, snaplen int) (*pcapFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: capture: %w", err)
	}
	p := &pcapFile{path: path, snaplen: snaplen}
	p.bw = bufferedFile{
		cur:   make([]byte, 0, pcapBufSize),
		spare: pcapBuffers - 1,
		free:  make(chan []byte, pcapBuffers),
		full:  make(chan []byte, pcapBuffers),
		done:  make(chan error, 1),
	}
	go func(full <-chan []byte, free chan<- []byte, done chan<- error) {
		var werr error
		for buf := range full {
			if werr == nil {
				_, werr = f.Write(buf)
			}
			free <- buf[:0]
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		done <- werr
	}(p.bw.full, p.bw.free, p.bw.done)
	p.w = pcapgo.NewWriterNanos(&p.bw)
	if err := p.w.WriteFileHeader(uint32(snaplen), layers.LinkTypeEthernet); err != nil {
		p.close()
		return nil, fmt.Errorf("netlab: capture %s: %w", path, err)
	}
	return p, nil
}

// writeLocked records one frame of wireLen bytes of which frame holds the
// first len(frame). The caller holds p.mu.
func (p *pcapFile) writeLocked(ts time.Time, frame []byte, wireLen int) {
	if p.err != nil || p.bw.full == nil {
		p.drops++
		return
	}
	if len(frame) > p.snaplen {
		frame = frame[:p.snaplen]
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: wireLen}
	if err := p.w.WritePacket(ci, frame); err != nil {
		p.err = fmt.Errorf("netlab: capture %s: %w", p.path, err)
		p.drops++
	}
}

func (p *pcapFile) dropCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// close writes what is buffered, closes the file and returns the first
// error. Frames the disk refused are not counted as drops: the error says
// the capture is incomplete.
func (p *pcapFile) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bw.full == nil {
		return p.err
	}
	if len(p.bw.cur) > 0 {
		p.bw.full <- p.bw.cur
	}
	close(p.bw.full)
	p.bw.full = nil
	if err := <-p.bw.done; err != nil && p.err == nil {
		p.err = fmt.Errorf("netlab: capture %s: %w", p.path, err)
	}
	return p.err
}
