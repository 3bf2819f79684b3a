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
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// A large socket queue and a writer of its own: writes to the 9p share
	// stall now and then, and the frames that arrive meanwhile must wait
	// in memory, not be dropped (with 16 MiB and writes in line, a 20 s
	// run under load lost 27 of 30,000 frames).
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return err
	}
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
	buf := make([]byte, snaplen)
	var n, queueDrops int
	// recv queues the next frame; flags MSG_DONTWAIT for the drain.
	recv := func(flags int) error {
		m, _, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC|flags)
		if err != nil {
			return err
		}
		caplen := min(m, len(buf))
		fr := frame{ci: gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: caplen, Length: m}, data: append([]byte(nil), buf[:caplen]...)}
		select {
		case frames <- fr:
			n++
		default:
			queueDrops++
		}
		return nil
	}
	for {
		select {
		case <-cs.stop:
			// The socket may still hold the run's last frames (its FINs
			// among them) when the domUs are gone: a reader that fell
			// behind under load. They are part of the run.
			stopped, backlog := time.Now(), n
			for recv(unix.MSG_DONTWAIT) == nil {
			}
			backlog = n - backlog
			close(frames)
			err := <-written
			kernelDrops := -1 // unknown
			if st, gerr := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); gerr == nil {
				kernelDrops = int(st.Drops)
			}
			cs.c.logf("capture %s: %d frames in %s (%d left in the socket at the end), %d dropped by the socket, %d by the writer; written out in %.1fs", vif, n, filepath.Base(path), backlog, kernelDrops, queueDrops, time.Since(stopped).Seconds())
			if err == nil {
				cs.mu.Lock()
				cs.stats.Vifs = append(cs.stats.Vifs, xenctl.VifCapture{Vif: vif, Pcap: filepath.Base(path), Frames: n, SocketDrops: kernelDrops, WriterDrops: queueDrops})
				cs.mu.Unlock()
			}
			return err
		default:
		}
		recv(0) // a timeout: look at stop again
	}
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
