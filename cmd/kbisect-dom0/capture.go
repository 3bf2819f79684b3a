package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/kbisect/kbisect/vm/xenctl"
)

// outDir is where the host's shared directory is mounted (virtio-9p).
const outDir = "/kbisect/out"

// snaplen keeps whole frames (netback hands dom0 GSO frames up to 64 KiB).
const snaplen = 262144

// captures records vifs in pcap files in the shared directory.
type captures struct {
	c     *controller
	mu    sync.Mutex
	stop  chan struct{}
	wg    sync.WaitGroup
	on    map[string]bool
	stats xenctl.CaptureStats
}

// startCaptures mounts the host's share; nil if it cannot.
func (c *controller) startCaptures() *captures {
	os.MkdirAll(outDir, 0o755)
	if err := unix.Mount(c.plan.ShareTag, outDir, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=none"); err != nil {
		c.logf("capture: mount the 9p share %q: %v; no capture", c.plan.ShareTag, err)
		return nil
	}
	return &captures{c: c, stop: make(chan struct{}), on: map[string]bool{}}
}

// add starts capturing vif into its pcap once the interface exists (the
// hotplug of a domU being created adds it); a vif without a pcap name is
// skipped.
func (cs *captures) add(vif, pcap string) {
	if cs == nil || pcap == "" {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.on[vif] {
		return
	}
	cs.on[vif] = true
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		if err := cs.capture(vif, filepath.Join(outDir, pcap)); err != nil {
			cs.c.logf("capture %s: %v", vif, err)
		}
	}()
}

func (cs *captures) capture(vif, path string) error {
	var ifi *net.Interface
	for {
		var err error
		if ifi, err = net.InterfaceByName(vif); err == nil {
			break
		}
		select {
		case <-cs.stop:
			return fmt.Errorf("%s never appeared", vif)
		case <-time.After(20 * time.Millisecond):
		}
	}
	ring, err := newPacketRing(ifi.Index)
	if err != nil {
		return err
	}
	defer ring.close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 4<<20)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	type frame struct {
		ci   gopacket.CaptureInfo
		data []byte
	}
	// A writer of its own: writes to the 9p share stall now and then.
	// While it waits, frames queue here, then in the ring, whose
	// overflow the kernel counts: the capture loses no frame unsaid.
	frames := make(chan frame, 1<<15)
	written := make(chan error, 1)
	go func() {
		var werr error
		for fr := range frames {
			if werr == nil {
				werr = w.WritePacket(fr.ci, fr.data)
			}
		}
		if err := bw.Flush(); werr == nil {
			werr = err
		}
		if err := f.Close(); werr == nil {
			werr = err
		}
		written <- werr
	}()
	var n int
	keep := func(ts time.Time, data []byte, length int) {
		caplen := min(len(data), snaplen)
		frames <- frame{ci: gopacket.CaptureInfo{Timestamp: ts, CaptureLength: caplen, Length: length}, data: append([]byte(nil), data[:caplen]...)}
		n++
	}
	var rerr error
	for rerr == nil {
		select {
		case <-cs.stop:
			// The ring may still hold the run's last frames (its FINs
			// among them) when the domUs are gone: they are part of the
			// run. A block not full is handed over after ringRetire.
			stopped, backlog := time.Now(), n
			for {
				k, err := ring.read(10*ringRetire, keep)
				if err != nil && !ifaceGone(err) {
					rerr = err
				}
				if k == 0 || err != nil {
					break
				}
			}
			backlog = n - backlog
			close(frames)
			if err := <-written; rerr == nil {
				rerr = err
			}
			drops, err := ring.drops()
			if err != nil {
				drops = -1 // unknown
			}
			cs.c.logf("capture %s: %d frames in %s (%d read after the run), %d dropped by the ring; written out in %.1fs", vif, n, filepath.Base(path), backlog, drops, time.Since(stopped).Seconds())
			if rerr == nil {
				cs.mu.Lock()
				cs.stats.Vifs = append(cs.stats.Vifs, xenctl.VifCapture{Vif: vif, Pcap: filepath.Base(path), Frames: n, SocketDrops: drops})
				cs.mu.Unlock()
			}
			return rerr
		default:
		}
		// A timeout, to look at stop again.
		if _, err := ring.read(200*time.Millisecond, keep); ifaceGone(err) {
			// The domU is gone, and its vif: the capture is over.
			<-cs.stop
		} else {
			rerr = err
		}
	}
	close(frames)
	<-written
	return rerr
}

// close ends the captures and writes out the pcaps.
func (cs *captures) close() {
	if cs == nil {
		return
	}
	close(cs.stop)
	cs.wg.Wait()
	// Written last: its presence says every pcap is complete on disk.
	unix.Sync()
	if b, err := json.Marshal(&cs.stats); err == nil {
		if err := os.WriteFile(filepath.Join(outDir, xenctl.CaptureStatsName), b, 0o644); err != nil {
			cs.c.logf("capture: %v", err)
		}
	}
	unix.Sync()
	unix.Unmount(outDir, 0)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
