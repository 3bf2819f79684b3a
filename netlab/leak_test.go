//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostState is what a Lab must leave as it found it.
type hostState struct {
	fds        []string // /proc/self/fd targets
	goroutines int
	children   []string
	ifaces     []string // the host's interfaces
	tmp        []string // entries of $TMPDIR
}

func takeHostState(t *testing.T) hostState {
	t.Helper()
	var s hostState
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			s.fds = append(s.fds, e.Name()+"->"+target)
		}
	}
	s.goroutines = runtime.NumGoroutine()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, c := range tasks {
		b, _ := os.ReadFile(c)
		s.children = append(s.children, strings.Fields(string(b))...)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		s.ifaces = append(s.ifaces, i.Name)
	}
	tmp, _ := os.ReadDir(os.TempDir())
	for _, e := range tmp {
		s.tmp = append(s.tmp, e.Name())
	}
	return s
}

// netnsHolders lists the processes' threads and fds that refer to the
// network namespace ns ("net:[inode]").
func netnsHolders(ns string) []string {
	var holders []string
	links, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, l := range append(links, fds...) {
		if target, err := os.Readlink(l); err == nil && target == ns {
			holders = append(holders, l)
		}
	}
	return holders
}

func TestNoLeaks(t *testing.T) {
	for _, topo := range []string{TopologyDirect, TopologyNAT} {
		for _, end := range []string{"close", "cancel"} {
			t.Run(topo+"/"+end, func(t *testing.T) {
				if topo == TopologyNAT {
					needRoot(t)
				}
				t.Setenv("TMPDIR", t.TempDir())
				capDir := filepath.Join(t.TempDir(), "captures")
				before := takeHostState(t)

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				l, err := New(ctx, Options{Topology: topo, CaptureDir: capDir})
				if err != nil {
					t.Fatal(err)
				}
				g := l.Endpoints()
				ns := ""
				if n, ok := l.topo.(*nat); ok {
					var st unix.Stat_t
					if err := unix.Fstat(n.nsFd, &st); err != nil {
						t.Fatal(err)
					}
					ns = fmt.Sprintf("net:[%d]", st.Ino)
					if len(netnsHolders(ns)) == 0 {
						t.Fatalf("the holder scan does not see the lab's own %s", ns)
					}
					// Traffic through the NAT, and its captures.
					a := startFakeGuest(t, g[0])
					a.resolve(natGateway)
				} else {
					frame := make([]byte, 1514)
					g[0].File.Write(frame)
					readFrame(t, g[1].File, 5*time.Second)
				}
				if during := takeHostState(t); !reflect.DeepEqual(during.ifaces, before.ifaces) {
					t.Errorf("host interfaces changed: %v, were %v", during.ifaces, before.ifaces)
				}

				if end == "close" {
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
				} else {
					cancel()
					select {
					case <-l.Done():
					case <-time.After(10 * time.Second):
						t.Fatal("the Lab did not close when its context was cancelled")
					}
				}

				// Goroutines and fds go away asynchronously (a reader
				// returns after its file closed): allow a moment.
				var after hostState
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					after = takeHostState(t)
					if (after.goroutines <= before.goroutines && slices.Equal(after.fds, before.fds)) || time.Now().After(deadline) {
						break
					}
				}
				if after.goroutines > before.goroutines {
					buf := make([]byte, 1<<20)
					t.Errorf("%d goroutines left over:\n%s", after.goroutines-before.goroutines, buf[:runtime.Stack(buf, true)])
				}
				if !slices.Equal(after.fds, before.fds) {
					t.Errorf("fds left open: %v, were %v", after.fds, before.fds)
				}
				if len(after.children) > len(before.children) {
					t.Errorf("child processes left: %v", after.children)
				}
				if !reflect.DeepEqual(after.ifaces, before.ifaces) {
					t.Errorf("host interfaces changed: %v, were %v", after.ifaces, before.ifaces)
				}
				if len(after.tmp) != 0 {
					t.Errorf("temp files left: %v", after.tmp)
				}
				if ns != "" {
					if h := netnsHolders(ns); len(h) != 0 {
						t.Errorf("namespace %s still held by %v", ns, h)
					}
				}
				ents, _ := os.ReadDir(capDir)
				var names []string
				for _, e := range ents {
					names = append(names, filepath.Join(capDir, e.Name()))
				}
				if !slices.Equal(names, l.Captures()) {
					t.Errorf("capture dir holds %v, want exactly %v", names, l.Captures())
				}
				// Each capture is complete and readable; the first one saw
				// the traffic above.
				for i, p := range l.Captures() {
					if recs := readPcap(t, p); i == 0 && len(recs) == 0 {
						t.Errorf("%s is empty", p)
					}
				}
			})
		}
	}
}
