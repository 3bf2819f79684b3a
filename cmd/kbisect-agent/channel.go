package main

import (
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
	"golang.org/x/sys/unix"
)

// channel writes events on the result device and mirrors the important ones
// on the console.
type channel struct {
	mu      sync.Mutex
	dev     *os.File
	console *os.File
}

func openChannel(p *proto.Params) *channel {
	path := proto.DefaultChannel
	if p != nil && p.Channel != "" {
		path = p.Channel
	}
	c := &channel{console: os.Stdout}
	if path == proto.ChannelConsole {
		return c
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		makeRaw(f)
		c.dev = f
	}
	return c
}

// makeRaw turns off output post-processing so lines arrive as written.
func makeRaw(f *os.File) {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return
	}
	t.Oflag &^= unix.OPOST
	unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}

// send writes ev; it fills in the uptime.
func (c *channel) send(ev proto.Event) {
	ev.Uptime = uptime()
	b, err := json.Marshal(ev)
	if err != nil {
		b = []byte(`{"type":"error","message":"cannot encode event"}`)
	}
	line := append([]byte(proto.EventPrefix), b...)
	line = append(line, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev != nil {
		c.dev.Write(line)
	}
	if c.dev == nil || ev.Type != "progress" {
		c.console.Write(line)
	}
}

// drainLimit bounds drain: a UART that never empties must not keep the
// machine up (the host's deadline would stop it, as an error).
const drainLimit = 10 * time.Second

// drain waits until the UARTs have sent every byte written to them
// (tcdrain). A write to a tty returns once the bytes are in its buffer, and
// a machine restarted before they left loses them. The agent used to sleep
// 50 ms instead; on a loaded CI host a receiver's run once ended as an
// error, "guest ended without a result", which this explains (it was not
// reproduced on demand).
func (c *channel) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range []*os.File{c.dev, c.console} {
			if f != nil {
				// TCSBRK with a non-zero argument is tcdrain; on a file
				// that is not a tty it fails at once.
				unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(drainLimit):
	}
}
