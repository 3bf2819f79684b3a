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
	stats xenctl.CaptureStats
	// rings are made before the domUs, one per vif to capture: see
	// newPacketRing. A capture takes its ring out.
	rings map[string]*packetRing
}

// startCaptures mounts the host's share and makes the receive rings of the
// plan's vifs, before any domU exists; nil if it cannot.
func (c *controller) startCaptures() *captures {
	os.MkdirAll(outDir, 0o755)
	if err := unix.Mount(c.plan.ShareTag, outDir, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=none"); err != nil {
		c.logf("capture: mount the 9p share %q: %v; no capture", c.plan.ShareTag, err)
		return nil
	}
	cs := &captures{c: c, stop: make(chan struct{}), rings: map[string]*packetRing{}}
	start := time.Now()
	for _, d := range c.plan.DomUs {
		if d.Pcap == "" {
			continue
		}
		r, err := newPacketRing()
		if err != nil {
			// Its pcap and stats will be missing: the wire is unknown.
			c.logf("capture %s: %v", d.Vif, err)
			continue
		}
		cs.rings[d.Vif] = r
	}
	c.logf("capture: %d receive rings made in %.1fs", len(cs.rings), time.Since(start).Seconds())
	return cs
}

// add starts capturing vif into its pcap once the interface exists (the
// hotplug of a domU being created adds it); a vif without a pcap name, or
// without a ring (its making failed, logged by startCaptures, or a capture
// took it already), is skipped.
func (cs *captures) add(vif, pcap string) {
	if cs == nil || pcap == "" {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ring := cs.rings[vif]
	if ring == nil {
		return
	}
	delete(cs.rings, vif)
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		defer ring.close()
		if err := cs.capture(ring, vif, filepath.Join(outDir, pcap)); err != nil {
			cs.c.logf("capture %s: %v", vif, err)
		}
	}()
}

func (cs *captures) capture(ring *packetRing, vif, path string) error {
	var ifi *net.Interface
	start := time.Now()
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
	// The hotplug renames the vif, then brings it up: it may still be
	// down here, and the ring takes its frames from when it is up.
	if err := ring.bind(ifi.Index); err != nil {
		return err
	}
	cs.c.logf("capture %s: bound %.2fs after the domU's creation", vif, time.Since(start).Seconds())
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
				if err != nil && !ifaceDown(err) {
					rerr = err
					break
				}
				if k == 0 && err == nil {
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
		// A timeout, to look at stop again. The vif going down (bound
		// before it was up, or its domU destroyed) is no reason to stop:
		// frames come again when it is up, and the run's end says when
		// the capture is over.
		if _, err := ring.read(200*time.Millisecond, keep); err != nil && !ifaceDown(err) {
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
	cs.mu.Lock()
	for vif, r := range cs.rings { // never captured: its domU never came
		r.close()
		delete(cs.rings, vif)
	}
	cs.mu.Unlock()
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
