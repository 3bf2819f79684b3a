package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
	"golang.org/x/sys/unix"
)

const (
	// BasePort is the receiver's TCP port for stream 0; stream i uses
	// BasePort+i.
	BasePort      = 5001
	connectGiveUp = 2 * time.Minute
	drainTimeout  = 30 * time.Second
	// sendStallGrace is how long past the run's end a write may block.
	sendStallGrace = time.Minute
	ioBuf          = proto.PatternBlock
	// corruptionGap joins mismatching bytes closer than this into one run.
	corruptionGap = 16
	// sampleBytes bounds the expected/seen bytes kept per corruption.
	sampleBytes = 32
)

// runStreams runs the sender or receiver side of N checked TCP streams.
func runStreams(ctx context.Context, p *proto.Params, send Send) (*proto.Result, error) {
	return runStreamsWith(ctx, p, send, nil)
}

// runStreamsWith is runStreams with atOffset, if not nil, called once by the
// sender when stream 0 has sent p.InjectOffset bytes (a self-test).
func runStreamsWith(ctx context.Context, p *proto.Params, send Send, atOffset func() error) (*proto.Result, error) {
	if p.Streams < 1 {
		p.Streams = 1
	}
	res := &proto.Result{Role: p.Role, KernelRelease: kernelRelease(), Streams: p.Streams, SIMD: cpuSIMD()}
	var moved atomic.Int64
	stopProgress := progress(send, p.Role, &moved)
	defer stopProgress()
	var err error
	if p.SIMDCanary {
		cctx, stop := context.WithCancel(ctx)
		done := make(chan *proto.SIMDCanary, 1)
		go func() { done <- simdCanary(cctx, p.Seed+uint64(len(p.Role))) }()
		defer func() {
			stop()
			res.SIMDCanary = <-done
		}()
	}
	start := time.Now()
	if p.Role == proto.RoleReceiver {
		err = receive(ctx, p, res, &moved)
		res.BytesVerified = moved.Load()
	} else {
		var stats tcpStats
		err = transmit(ctx, p, &moved, atOffset, &stats)
		res.TCP = stats.sorted()
		res.BytesSent = moved.Load()
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.ThroughputMbit = float64(moved.Load()) * 8 / res.Seconds / 1e6
	}
	return res, err
}

// progress sends the running byte count once a second until stopped.
func progress(send Send, role string, n *atomic.Int64) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				send(proto.Event{Type: "progress", Role: role, Bytes: n.Load()})
			}
		}
	}()
	return func() { close(done) }
}

// transmit connects the streams and sends the pattern for p.Duration, then
// closes its side and waits for the receiver to close, so that every byte
// has been delivered before the guest powers off.
func transmit(ctx context.Context, p *proto.Params, moved *atomic.Int64, atOffset func() error, stats *tcpStats) error {
	conns := make([]*net.TCPConn, p.Streams)
	for i := range conns {
		c, err := dial(ctx, net.JoinHostPort(p.Peer, fmt.Sprint(BasePort+i)))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return err
		}
		conns[i] = c
	}
	end := time.Now().Add(time.Duration(p.Duration))
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			var hook func() error
			if i == 0 {
				hook = atOffset
			}
			errs[i] = sendStream(ctx, p, i, c, end, moved, hook, stats)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	deadline := time.Now().Add(connectGiveUp)
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := d.DialContext(dctx, "tcp4", addr)
		cancel()
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to receiver %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sendStream(ctx context.Context, p *proto.Params, stream int, c *net.TCPConn, end time.Time, moved *atomic.Int64, atOffset func() error, stats *tcpStats) error {
	pat := proto.NewPattern(p.Pattern, p.Seed, stream)
	// The pattern's period is ioBuf, so one buffer serves every write.
	buf := make([]byte, ioBuf)
	pat.Fill(buf, 0)
	var off int64
	// A receiver that vanished without a reset (its domain destroyed
	// after it stopped on a corruption, the RST lost with it) would leave
	// a write blocked for TCP's whole retry time: no write ends past
	// this.
	c.SetWriteDeadline(end.Add(sendStallGrace))
	write := c.Write
	var sizes *writeSizes
	if p.WriteSizes == proto.WriteSizesVary {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("stream %d: %w", stream, err)
		}
		write = func(b []byte) (int, error) { return writeRecord(rc, b) }
		sizes = newWriteSizes(p.Seed, stream)
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		// Every write starts at its offset in the pattern's period.
		at := int(off % ioBuf)
		out := buf[at:]
		if sizes != nil {
			out = out[:min(len(out), sizes.next())]
		}
		if stream == 0 && p.InjectSide == proto.InjectSender && p.InjectOffset >= off && p.InjectOffset < off+int64(len(out)) {
			out = append([]byte(nil), out...)
			out[p.InjectOffset-off] ^= 0xff
		}
		n, err := write(out)
		off += int64(n)
		moved.Add(int64(n))
		if err != nil {
			if p.StopOnFail {
				return nil // the receiver hung up after a corruption
			}
			return fmt.Errorf("stream %d: send at offset %d: %w", stream, off, err)
		}
		if atOffset != nil && off > p.InjectOffset {
			if err := atOffset(); err != nil {
				return fmt.Errorf("self-test at offset %d: %w", off, err)
			}
			atOffset = nil
		}
	}
	if st, ok := tcpStat(c, stream); ok {
		stats.add(st)
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("stream %d: close: %w", stream, err)
	}
	c.SetReadDeadline(time.Now().Add(drainTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil && !p.StopOnFail {
		return fmt.Errorf("stream %d: waiting for the receiver to finish: %w", stream, err)
	}
	return nil
}

// receive accepts the streams and checks every byte against the pattern.
func receive(ctx context.Context, p *proto.Params, res *proto.Result, moved *atomic.Int64) error {
	listeners := make([]*net.TCPListener, p.Streams)
	for i := range listeners {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{Port: BasePort + i})
		if err != nil {
			return fmt.Errorf("listen on port %d: %w", BasePort+i, err)
		}
		defer l.Close()
		listeners[i] = l
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		stopped sync.Once
	)
	conns := make([]*net.TCPConn, p.Streams)
	errs := make([]error, p.Streams)
	record := func(c proto.Corruption) {
		mu.Lock()
		defer mu.Unlock()
		if n := len(res.Corruptions); n > 0 {
			last := &res.Corruptions[n-1]
			if last.Stream == c.Stream && last.Offset+int64(last.Length) == c.Offset {
				last.Length += c.Length
				return
			}
		}
		if len(res.Corruptions) >= proto.MaxReportedCorruptions {
			res.CorruptionsDropped++
		} else {
			res.Corruptions = append(res.Corruptions, c)
		}
		if p.StopOnFail {
			stopped.Do(func() { close(stop) })
		}
	}
	for i, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.SetDeadline(time.Now().Add(connectGiveUp + time.Duration(p.Duration)))
			c, err := l.AcceptTCP()
			if err != nil {
				errs[i] = fmt.Errorf("stream %d: the sender never connected to port %d: %w", i, BasePort+i, err)
				return
			}
			mu.Lock()
			conns[i] = c
			mu.Unlock()
			defer c.Close()
			errs[i] = checkStream(p, i, c, moved, record)
		}()
	}
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		mu.Lock()
		for _, c := range conns {
			if c != nil {
				c.SetLinger(0)
				c.Close()
			}
		}
		for _, l := range listeners {
			l.Close()
		}
		mu.Unlock()
	}()
	wg.Wait()
	stopped.Do(func() { close(stop) })
	if len(res.Corruptions) > 0 && p.StopOnFail {
		return nil
	}
	return errors.Join(errs...)
}

// checkStream reads one stream to its end and reports every run of bytes
// that differs from the pattern.
func checkStream(p *proto.Params, stream int, c *net.TCPConn, moved *atomic.Int64, record func(proto.Corruption)) error {
	pat := proto.NewPattern(p.Pattern, p.Seed, stream)
	buf := make([]byte, 4*ioBuf)
	want := make([]byte, 4*ioBuf)
	var off int64
	for {
		n, err := c.Read(buf)
		if n > 0 {
			got := buf[:n]
			if stream == 0 && p.InjectSide == proto.InjectReceiver && p.InjectOffset >= off && p.InjectOffset < off+int64(n) {
				got[p.InjectOffset-off] ^= 0xff
			}
			for i := pat.Mismatch(got, off); i >= 0; {
				pat.Fill(want[:n], off)
				last := i
				for j := i + 1; j < n && j-last <= corruptionGap; j++ {
					if got[j] != want[j] {
						last = j
					}
				}
				record(proto.Corruption{
					Stream:   stream,
					Offset:   off + int64(i),
					Length:   last - i + 1,
					Expected: append([]byte(nil), want[i:min(last+1, i+sampleBytes)]...),
					Seen:     append([]byte(nil), got[i:min(last+1, i+sampleBytes)]...),
					Side:     proto.InjectReceiver,
				})
				next := pat.Mismatch(got[last+1:], off+int64(last+1))
				if next < 0 {
					break
				}
				i = last + 1 + next
			}
			off += int64(n)
			moved.Add(int64(n))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if p.StopOnFail && errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stream %d: receive at offset %d: %w", stream, off, err)
		}
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// tcpStats collects the streams' TCP_INFO.
type tcpStats struct {
	mu sync.Mutex
	st []proto.TCPStat
}

func (t *tcpStats) add(s proto.TCPStat) {
	t.mu.Lock()
	t.st = append(t.st, s)
	t.mu.Unlock()
}

func (t *tcpStats) sorted() []proto.TCPStat {
	t.mu.Lock()
	defer t.mu.Unlock()
	sort.Slice(t.st, func(i, j int) bool { return t.st[i].Stream < t.st[j].Stream })
	return t.st
}

// tcpStat reads the connection's TCP_INFO (every kernel since 2.6 has the
// fields used here).
func tcpStat(c *net.TCPConn, stream int) (proto.TCPStat, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return proto.TCPStat{}, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		return proto.TCPStat{}, false
	}
	return proto.TCPStat{
		Stream: stream, RTTms: float64(info.Rtt) / 1000, RTTVarms: float64(info.Rttvar) / 1000, RTOms: float64(info.Rto) / 1000,
		Cwnd: info.Snd_cwnd, Ssthresh: info.Snd_ssthresh, TotalRetrans: info.Total_retrans,
	}, true
}
