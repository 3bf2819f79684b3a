package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/testcases/proto"
)

// TestReadParams reads the parameters the host writes into the initramfs,
// and keeps the defaults (no injected corruption) when they are missing.
func TestReadParams(t *testing.T) {
	dir := t.TempDir()
	p, err := readParams(filepath.Join(dir, "missing.json"))
	if err == nil || p == nil || p.InjectOffset != -1 {
		t.Errorf("missing file: %+v, %v; want the defaults and an error", p, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{"), 0o644)
	if _, err := readParams(bad); err == nil || !strings.Contains(err.Error(), "parse parameters") {
		t.Errorf("bad JSON: %v", err)
	}
	good := filepath.Join(dir, "params.json")
	b, _ := json.Marshal(proto.Params{Role: "receiver", Addr: "198.18.0.2/24", MTU: 9000, InjectOffset: 42})
	os.WriteFile(good, b, 0o644)
	p, err = readParams(good)
	if err != nil || p.Role != "receiver" || p.Addr != "198.18.0.2/24" || p.MTU != 9000 || p.InjectOffset != 42 {
		t.Errorf("params: %+v, %v", p, err)
	}
}

// TestChannel checks what the host reads: every event on the result
// channel as one prefixed JSON line with the uptime, and all but progress
// events mirrored on the console.
func TestChannel(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "channel")
	os.WriteFile(dev, nil, 0o644)
	console, err := os.Create(filepath.Join(dir, "console"))
	if err != nil {
		t.Fatal(err)
	}
	c := openChannel(&proto.Params{Channel: dev})
	if c.dev == nil {
		t.Fatal("the channel device was not opened")
	}
	c.console = console
	c.send(proto.Event{Type: "ready", Role: "sender"})
	c.send(proto.Event{Type: "progress", Role: "sender"})
	c.send(proto.Event{Type: "result", Role: "sender", Result: &proto.Result{KernelRelease: "6.1.0"}})
	c.dev.Close()
	console.Close()

	events := func(path string) []proto.Event {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []proto.Event
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			js, ok := strings.CutPrefix(l, proto.EventPrefix)
			if !ok {
				t.Fatalf("line without the event prefix: %q", l)
			}
			var ev proto.Event
			if err := json.Unmarshal([]byte(js), &ev); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			out = append(out, ev)
		}
		return out
	}
	onDev, onConsole := events(dev), events(console.Name())
	if len(onDev) != 3 || len(onConsole) != 2 || onConsole[1].Type != "result" || onConsole[1].Result.KernelRelease != "6.1.0" {
		t.Errorf("channel %+v\nconsole %+v", onDev, onConsole)
	}
	for _, ev := range onDev {
		if ev.Uptime <= 0 {
			t.Errorf("event %s without uptime", ev.Type)
		}
	}
	// The console channel: everything on the console.
	if c := openChannel(&proto.Params{Channel: proto.ChannelConsole}); c.dev != nil {
		t.Error("the console channel opened a device")
	}
}
