package main

import (
	"encoding/json"
	"os"
	"sync"

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
