package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetRing is a packet socket with a TPACKET_V3 receive ring: the kernel
// copies the frames of one interface into blocks of memory shared with
// this process, and the reader walks a block's frames without a system
// call per frame. dom0 has one vCPU, which netback and the bridge keep
// busy during a fast run: a reader that made one recvfrom per frame there
// fell 56,000 frames behind in a 20 s run, and the socket's queue, full,
// dropped frames. (gopacket's afpacket package does this with cgo; the
// controller is a static binary, so the few structures are read here.)
type packetRing struct {
	fd     int
	ring   []byte
	block  int // block size
	blocks int
	cur    int // the next block to read
}

// Ring geometry: 512 blocks of 256 KiB hold about 80,000 full frames, 20
// s of the fastest netfront run, for when the pcap writer stalls. A block
// the kernel has begun is handed over after ringRetire even when not
// full, so the capture lags by at most that; a block handed over early
// wastes its rest, so it must not be much shorter than a block takes to
// fill (160 frames: 40 ms at 4,000 frames/s; with 1 MiB blocks and 20 ms,
// a run through the NAT dropped 1,298 of 104,000 frames).
const (
	ringBlock  = 256 << 10
	ringBlocks = 512
	ringRetire = 100 * time.Millisecond
	// ringFrame only satisfies the kernel's checks: V3 frames have the
	// length they need.
	ringFrame = 2048
)

// newPacketRing opens a packet socket and maps its receive ring; bind
// then ties it to an interface. The socket is opened for no protocol, so
// that it takes no frame before it is bound: one opened for ETH_P_ALL
// takes every interface's frames from the start (a NAT run's capture began
// with each ESP packet four times, from both vifs and both bridges). The
// ring can be made before the interface exists, so that allocating and
// mapping its 128 MiB (0.3-0.5 s in an idle dom0) does not compete with
// the domUs being built.
func newPacketRing() (*packetRing, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r := &packetRing{fd: fd, block: ringBlock, blocks: ringBlocks}
	if err := r.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

func (r *packetRing) setup() error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(r.block),
		Block_nr:       uint32(r.blocks),
		Frame_size:     ringFrame,
		Frame_nr:       uint32(r.block / ringFrame * r.blocks),
		Retire_blk_tov: uint32(ringRetire / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(r.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("receive ring of %d MiB: %w", r.block*r.blocks>>20, err)
	}
	ring, err := unix.Mmap(r.fd, 0, r.block*r.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the receive ring: %w", err)
	}
	r.ring = ring
	return nil
}

// bind starts the capture of every frame of the interface of index
// ifindex. An interface still down takes frames from when it comes up.
func (r *packetRing) bind(ifindex int) error {
	if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind to interface %d: %w", ifindex, err)
	}
	return nil
}

// blockHeader is the header of the block at the read position (struct
// tpacket_block_desc: version, offset to private data, then the V1 header).
func (r *packetRing) blockHeader() *unix.TpacketHdrV1 {
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&r.ring[r.cur*r.block+8]))
}

// read waits up to timeout for the next block the kernel has filled and
// calls fn with each of its frames: the kernel's timestamp, the bytes kept
// (data is only valid during the call) and the frame's length on the wire.
// It returns the number of frames: 0 when none came. The blocks filled
// before the interface went down or away are read first; then read
// returns the socket's error once (ENETDOWN: see ifaceDown).
func (r *packetRing) read(timeout time.Duration, fn func(ts time.Time, data []byte, length int)) (int, error) {
	bh := r.blockHeader()
	if atomic.LoadUint32(&bh.Block_status)&unix.TP_STATUS_USER == 0 {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, int(timeout/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("poll the receive ring: %w", err)
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			// Without this, poll would say so at once, over and over.
			if e, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
				return 0, fmt.Errorf("receive ring: %w", unix.Errno(e))
			}
		}
		if atomic.LoadUint32(&bh.Block_status)&unix.TP_STATUS_USER == 0 {
			return 0, nil
		}
	}
	base := r.cur * r.block
	off := int(bh.Offset_to_first_pkt)
	n := int(bh.Num_pkts)
	for i := 0; i < n; i++ {
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[base+off]))
		start := base + off + int(h.Mac)
		fn(time.Unix(int64(h.Sec), int64(h.Nsec)), r.ring[start:start+int(h.Snaplen)], int(h.Len))
		off += int(h.Next_offset)
	}
	atomic.StoreUint32(&bh.Block_status, unix.TP_STATUS_KERNEL)
	r.cur = (r.cur + 1) % r.blocks
	return n, nil
}

// ifaceDown reports whether err says that the ring's interface is down or
// went away (a domU destroyed takes its vif with it; a ring bound before
// its interface was up hears so too): frames come again only if it comes
// up.
func ifaceDown(err error) bool {
	return errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO)
}

// drops returns the frames the kernel dropped because the ring was full,
// since the last call.
func (r *packetRing) drops() (int, error) {
	st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, err
	}
	return int(st.Drops), nil
}

// close unmaps the ring and closes the socket.
func (r *packetRing) close() {
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	unix.Close(r.fd)
}
