package vm

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/tailbuf"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/vm/xenctl"
	"github.com/kbisect/kbisect/vmimage"
)

// Xen runs each guest as a Xen domU with netfront, in a dom0 kbisect
// controls (see XenOptions and StartXenPair).
const Xen Hypervisor = "xen"

// Xen guest types for XenOptions.GuestType.
const (
	XenPV  = "pv"
	XenPVH = "pvh"
)

// DefaultXenImage is Debian's Xen 4.17 hypervisor (package
// xen-hypervisor-4.17-amd64), gzip-compressed; the nested host decompresses
// it into the cache, as QEMU's multiboot loader wants an ELF.
const DefaultXenImage = "/boot/xen-4.17-amd64.gz"

// shareTag is the 9p mount tag of XenOptions.CaptureDir.
const shareTag = "kbisect"

// DefaultXenCPU is the default CPU model (QEMU -cpu) of the nested Xen
// machine. Xen's PV dom0 dies at its first instruction with plain "max"
// under TCG (SMAP/SMEP, PKU and LA57 are what it trips on). With the rest
// of "max" (XSAVE, AVX2) a PV domU's Go agent died of a general protection
// fault in the middle of the test, so the model is QEMU's plain qemu64 with
// only the SSE-era extensions the guests' crypto uses (AES-NI, PCLMUL,
// SSSE3); svm and npt let Xen run PVH and HVM domUs.
const DefaultXenCPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+aes,+pclmulqdq,+svm,+npt"

// XenOptions say how to host a pair of Xen domUs. Today the host is Xen
// nested under QEMU (TCG): a machine with the Xen hypervisor, a dom0 running
// kbisect's controller (cmd/kbisect-dom0) as /init, the two domUs created
// by xl inside it, and dom0 as the wire between their netback vifs.
type XenOptions struct {
	// Xen is the hypervisor image (ELF or gzip-compressed); empty means
	// DefaultXenImage.
	Xen string
	// Dom0Kernel is dom0's kernel (a bzImage with Xen dom0 support, such as
	// Debian's); Dom0Image its base initramfs (vmimage.BuildDom0).
	Dom0Kernel string
	Dom0Image  *vmimage.Image
	// ToolRoot is where the Xen toolstack is installed ("" means "/").
	ToolRoot string
	// Topology is "direct" (one bridge) or "nat" (guest A behind a
	// masquerading dom0).
	Topology string
	// Bridges are the dom0 bridges with dom0's addresses (xenctl.Plan).
	Bridges []xenctl.Bridge
	// Bridge names the bridge of guest A and guest B.
	Bridge [2]string
	// GuestType is XenPV (default) or XenPVH.
	GuestType string
	// CPU is the nested machine's QEMU CPU model; empty means
	// DefaultXenCPU. The domUs see what Xen passes on of it.
	CPU string
	// Append is added to Xen's own command line (e.g. "spec-ctrl=eager-fpu").
	Append string
	// Dom0MemoryMB is dom0's memory; 0 means 768: the wire's captures
	// hold up to a few hundred MB in dom0 when 9p writes fall behind a
	// fast run (512 ran out with four streams at 40 Mbit/s).
	Dom0MemoryMB int
	// ConsoleLog receives the whole serial console of the nested machine
	// (Xen, dom0, the controller's protocol lines).
	ConsoleLog string
	// CaptureDir, when set, is shared with dom0 (virtio-9p), which records
	// guest i's vif in CaptureDir/Pcaps[i] (no capture for an empty name).
	CaptureDir string
	Pcaps      [2]string
	// WorkDir holds the per-run dom0 initramfs; it must exist.
	WorkDir string
	// QEMU is the QEMU binary; empty means qemu-system-x86_64.
	QEMU string
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

func (o *XenOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// StartXenPair boots the Xen host and creates guests a and b as domUs, each
// with one netfront NIC on its bridge (a.Netdevs and b.Netdevs are ignored:
// dom0 is the wire). Kernel, Initrd, Append, MemoryMB, CPUs, ConsoleLog and
// Timeout are honoured as under QEMU; each guest's console is /dev/hvc0, and
// its agent must write its events to the console (proto.ChannelConsole). A
// domU that xl cannot create ends with ExitHypervisorError and xl's message.
func StartXenPair(ctx context.Context, xo XenOptions, a, b Config) (*Pair, error) {
	if a.Name == "" {
		a.Name = "a"
	}
	if b.Name == "" {
		b.Name = "b"
	}
	if a.Name == b.Name {
		return nil, fmt.Errorf("guest pair: both guests are named %q: give them different names", a.Name)
	}
	var cfgs [2]Config
	for i, c := range []Config{a, b} {
		c.Hypervisor = Xen
		c.Netdevs = nil
		var err error
		if cfgs[i], err = c.withDefaults(); err != nil {
			return nil, err
		}
	}
	h, err := startXenHost(ctx, &xo, cfgs)
	if err != nil {
		return nil, err
	}
	var guests [2]*Guest
	for i := range cfgs {
		m := h.machines[i]
		g, err := startGuest(ctx, cfgs[i], func(context.Context, *Config, hooks) (machine, error) { return m, nil })
		if err != nil {
			for _, g := range guests {
				if g != nil {
					g.Close()
				}
			}
			h.shutdown()
			return nil, err
		}
		guests[i] = g
	}
	p := &Pair{A: guests[0], B: guests[1], done: make(chan struct{})}
	go p.watch()
	return p, nil
}

// xenHost is the nested Xen machine: one QEMU process whose serial console
// carries the controller's protocol.
type xenHost struct {
	xo       *XenOptions
	cmd      *exec.Cmd
	args     []string
	t0       time.Time
	serial   *os.File
	log      *os.File
	machines [2]*xenMachine
	exited   chan struct{}
	st       exitStatus
	stderr   *tailbuf.Buffer
	tail     *tailbuf.Buffer // the raw console, for errors

	mu       sync.Mutex
	reaped   bool
	released int
	stopOnce sync.Once
}

// xenMachine is one domU as the Guest sees it.
type xenMachine struct {
	h     *xenHost
	name  string
	conR  *io.PipeReader
	conW  *io.PipeWriter
	agR   *io.PipeReader
	agW   *io.PipeWriter
	ended chan struct{}
	once  sync.Once
	st    exitStatus
}

func startXenHost(ctx context.Context, xo *XenOptions, cfgs [2]Config) (*xenHost, error) {
	if xo.Dom0Kernel == "" || xo.Dom0Image == nil {
		return nil, errors.New("xen host: no dom0 kernel or image")
	}
	if xo.WorkDir == "" {
		return nil, errors.New("xen host: no work directory")
	}
	if xo.GuestType == "" {
		xo.GuestType = XenPV
	}
	if xo.GuestType != XenPV && xo.GuestType != XenPVH {
		return nil, fmt.Errorf("xen guest type %q: use %s or %s", xo.GuestType, XenPV, XenPVH)
	}
	if xo.Dom0MemoryMB == 0 {
		xo.Dom0MemoryMB = 768
	}
	if xo.CPU == "" {
		xo.CPU = DefaultXenCPU
	}
	if strings.ContainsAny(xo.Append, ",\n") {
		return nil, fmt.Errorf("xen command line %q: commas and newlines cannot pass QEMU's multiboot loader", xo.Append)
	}
	qemu := xo.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	qemuPath, err := exec.LookPath(qemu)
	if err != nil {
		return nil, fmt.Errorf("xen host: %s not found: install QEMU (apt-get install qemu-system-x86): %w", qemu, err)
	}
	xen, err := xenELF(xo.Xen)
	if err != nil {
		return nil, err
	}
	root := xo.ToolRoot
	if root == "" {
		root = "/"
	}
	files, err := vmimage.ToolFiles(root, vmimage.XenTools)
	if err != nil {
		return nil, err
	}
	plan := xenctl.Plan{Topology: xo.Topology, Modules: xo.Dom0Image.Modules, Bridges: xo.Bridges}
	totalMB := xo.Dom0MemoryMB + 128
	for i, c := range cfgs {
		img, err := XenBootImage(ctx, c.Kernel, xo.GuestType)
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", c.Name, err)
		}
		kb, err := os.ReadFile(img)
		if err != nil {
			return nil, fmt.Errorf("guest %s: kernel: %w", c.Name, err)
		}
		d := xenctl.DomU{
			Name:     c.Name,
			Type:     xo.GuestType,
			Kernel:   "/kbisect/domu/" + c.Name + ".kernel",
			Cmdline:  strings.TrimSpace("console=hvc0 panic=-1 " + c.Append),
			MemoryMB: c.MemoryMB,
			VCPUs:    c.CPUs,
			MAC:      defaultMAC(c.Name, 0).String(),
			Bridge:   xo.Bridge[i],
			Vif:      fmt.Sprintf("vif-%c", 'a'+i),
			CPUs:     pinning(i, c.CPUs),
		}
		if xo.CaptureDir != "" {
			d.Pcap = xo.Pcaps[i]
		}
		files[d.Kernel] = kb
		if c.Initrd != "" {
			rb, err := os.ReadFile(c.Initrd)
			if err != nil {
				return nil, fmt.Errorf("guest %s: initramfs: %w", c.Name, err)
			}
			d.Ramdisk = "/kbisect/domu/" + c.Name + ".initrd"
			files[d.Ramdisk] = rb
		}
		plan.DomUs = append(plan.DomUs, d)
		totalMB += c.MemoryMB + 16
	}
	if xo.CaptureDir != "" {
		plan.Capture, plan.ShareTag = true, shareTag
	}
	pj, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	files[xenctl.PlanPath] = pj
	initrd := filepath.Join(xo.WorkDir, "dom0.initramfs.cpio")
	if err := vmimage.WithFiles(ctx, xo.Dom0Image, files, initrd); err != nil {
		return nil, fmt.Errorf("xen host: dom0 initramfs: %w", err)
	}

	h := &xenHost{xo: xo, exited: make(chan struct{}), stderr: tailbuf.New(16 << 10), tail: tailbuf.New(8 << 10)}
	for i, c := range cfgs {
		m := &xenMachine{h: h, name: c.Name, ended: make(chan struct{})}
		m.conR, m.conW = io.Pipe()
		m.agR, m.agW = io.Pipe()
		h.machines[i] = m
	}
	if xo.ConsoleLog != "" {
		if h.log, err = os.Create(xo.ConsoleLog); err != nil {
			return nil, fmt.Errorf("xen host: console log: %w", err)
		}
	}
	serHost, serGuest, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("xen host: serial socketpair: %w", err)
	}
	defer serGuest.Close()
	h.serial = serHost
	// Xen: its console on the first UART; dom0 gets the rest of the
	// machine. Every vCPU has a physical CPU of its own (dom0 on CPU 0, the
	// domUs after it): with a shared one, netback in dom0 waited for a
	// scheduler time slice behind a busy domU, and ESP traffic (no GSO)
	// crawled at about 30 packets a second. Commas separate multiboot modules: none in the command lines.
	xenCmd := fmt.Sprintf("console=com1 com1=115200,8n1 dom0_mem=%dM,max:%dM dom0_max_vcpus=1 dom0_vcpus_pin bootscrub=false loglvl=warning guest_loglvl=warning", xo.Dom0MemoryMB, xo.Dom0MemoryMB)
	if xo.Append != "" {
		xenCmd += " " + xo.Append
	}
	dom0Cmd := "console=hvc0 earlyprintk=xen panic=-1 loglevel=4 tsc=reliable"
	h.args = []string{
		"-name", "xen-host",
		"-machine", "pc",
		"-accel", "tcg",
		"-cpu", xo.CPU,
		"-m", fmt.Sprint(totalMB),
		"-smp", fmt.Sprint(1 + cfgs[0].CPUs + cfgs[1].CPUs),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-no-reboot",
		"-kernel", xen,
		"-append", xenCmd,
		"-initrd", fmt.Sprintf("%s %s,%s", xo.Dom0Kernel, dom0Cmd, initrd),
		"-chardev", fmt.Sprintf("socket,id=console,fd=%d", fdConsole),
		"-serial", "chardev:console",
	}
	if xo.CaptureDir != "" {
		h.args = append(h.args, "-virtfs", fmt.Sprintf("local,path=%s,mount_tag=%s,security_model=none,id=%s", xo.CaptureDir, shareTag, shareTag))
	}
	cmd := exec.Command(qemuPath, h.args...)
	cmd.ExtraFiles = []*os.File{serGuest}
	cmd.Stdout, cmd.Stderr = h.stderr, h.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	h.cmd = cmd
	h.t0 = time.Now()
	if err := startPrioritized(cmd, xo.logf); err != nil {
		return nil, fmt.Errorf("xen host: start %s: %w", qemuPath, err)
	}
	xo.logf("xen: booting Xen, dom0 and %s, %s (%s) nested under QEMU TCG", cfgs[0].Name, cfgs[1].Name, xo.GuestType)
	go func() {
		err := cmd.Wait()
		st := exitStatus{code: -1, err: err}
		if ps := cmd.ProcessState; ps != nil {
			st.code = ps.ExitCode()
		}
		st.stderr = strings.TrimSpace(h.stderr.String())
		h.mu.Lock()
		h.reaped = true
		h.mu.Unlock()
		h.st = st
		close(h.exited)
	}()
	go h.demux()
	go func() {
		select {
		case <-ctx.Done():
			h.shutdown()
		case <-h.exited:
		}
	}()
	return h, nil
}

// demux reads the serial console: the raw stream goes to the log, protocol
// lines to their domU.
func (h *xenHost) demux() {
	br := bufio.NewReaderSize(h.serial, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if h.log != nil {
				h.log.WriteString(strings.ReplaceAll(line, "\r", ""))
			}
			h.tail.Write([]byte(line))
			h.handle(line)
		}
		if err != nil {
			break
		}
	}
	if h.log != nil {
		h.log.Close()
	}
	<-h.exited
	why := "the Xen host machine ended before the domU did"
	if h.st.code != 0 || h.st.err != nil {
		why = fmt.Sprintf("the Xen host machine (QEMU) exited with status %d", h.st.code)
	}
	for _, m := range h.machines {
		m.end(exitStatus{code: -1, err: errors.New(why), stderr: lastConsoleLine(h.tail.String()) + "; " + h.st.stderr})
	}
}

func (h *xenHost) handle(s string) {
	l, ok := xenctl.Parse(s)
	if !ok {
		return
	}
	if l.Guest == xenctl.Controller {
		switch l.Kind {
		case xenctl.KindError:
			for _, m := range h.machines {
				m.end(exitStatus{code: 1, stderr: "dom0: " + l.Text})
			}
		case xenctl.KindLog, xenctl.KindReady:
			h.xo.logf("xen: dom0 (%.1fs): %s", time.Since(h.t0).Seconds(), l.Text)
		}
		return
	}
	var m *xenMachine
	for _, c := range h.machines {
		if c.name == l.Guest {
			m = c
		}
	}
	if m == nil {
		return
	}
	switch l.Kind {
	case xenctl.KindConsole:
		select {
		case <-m.ended:
			return
		default:
		}
		m.conW.Write([]byte(l.Text + "\n"))
		if strings.Contains(l.Text, "KBISECT-EVENT ") {
			m.agW.Write([]byte(l.Text + "\n"))
		}
	case xenctl.KindStarted:
		h.xo.logf("xen: %s is domain %s (%.1fs)", m.name, l.Text, time.Since(h.t0).Seconds())
	case xenctl.KindExit:
		m.end(exitStatus{code: 0, stderr: l.Text})
	case xenctl.KindError:
		m.end(exitStatus{code: 1, stderr: l.Text})
	}
}

// shutdown ends the nested machine: dom0 powers off by itself once its
// domUs are gone; this is for the other cases.
func (h *xenHost) shutdown() {
	h.stopOnce.Do(func() {
		go func() {
			select {
			case <-h.exited:
				return
			case <-time.After(10 * time.Second):
			}
			h.signal(syscall.SIGKILL)
		}()
	})
	for _, m := range h.machines {
		m.sendDestroy()
	}
}

func (h *xenHost) signal(sig syscall.Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reaped || h.cmd == nil || h.cmd.Process == nil {
		return
	}
	syscall.Kill(-h.cmd.Process.Pid, sig)
	syscall.Kill(h.cmd.Process.Pid, sig)
}

// release is called once per machine cleanup; the last one stops the host.
func (h *xenHost) release() {
	h.mu.Lock()
	h.released++
	last := h.released == len(h.machines)
	h.mu.Unlock()
	if !last {
		return
	}
	// dom0 powers off once its domUs are gone and its captures are
	// written out. A capture that fell behind under load (dom0 shares a
	// TCG CPU with netback) drains its socket and writes through 9p for
	// tens of seconds: killed sooner, the pcap ends inside a packet and
	// the run's wire verdict is lost.
	grace := 15 * time.Second
	if h.xo.CaptureDir != "" {
		grace = 2 * time.Minute
	}
	select {
	case <-h.exited:
	case <-time.After(grace):
		h.signal(syscall.SIGKILL)
		<-h.exited
	}
	h.serial.Close()
}

func (m *xenMachine) end(st exitStatus) {
	m.once.Do(func() {
		m.st = st
		m.conW.Close()
		m.agW.Close()
		close(m.ended)
	})
}

func (m *xenMachine) sendDestroy() {
	select {
	case <-m.h.exited:
		return
	default:
	}
	m.h.serial.Write([]byte(xenctl.CmdDestroy + " " + m.name + "\n"))
}

func (m *xenMachine) consoleConn() io.ReadWriteCloser { return xenConsole{m.conR} }
func (m *xenMachine) agentConn() io.ReadCloser        { return m.agR }
func (m *xenMachine) started() time.Time              { return m.h.t0 }
func (m *xenMachine) cmdline() []string {
	return append([]string{m.h.cmd.Path}, m.h.args...)
}
func (m *xenMachine) pid() int { return m.h.cmd.Process.Pid }

func (m *xenMachine) wait() exitStatus {
	<-m.ended
	return m.st
}

func (m *xenMachine) quit() { m.sendDestroy() }

// kill ends the guest as far as kbisect is concerned; dom0 is asked to
// destroy the domain, and the host goes when both guests are gone.
func (m *xenMachine) kill() {
	m.sendDestroy()
	m.end(exitStatus{code: -1, signaled: true, err: errors.New("killed")})
}

func (m *xenMachine) status(ctx context.Context) (string, error) {
	select {
	case <-m.ended:
		return "ended", nil
	default:
		return "running", nil
	}
}

func (m *xenMachine) cleanup() error {
	m.conR.Close()
	m.agR.Close()
	m.h.release()
	return nil
}

// xenConsole is a domU's console as a ReadWriteCloser; input is not
// supported (the domU's hvc0 is reached through dom0 only).
type xenConsole struct{ r *io.PipeReader }

func (c xenConsole) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c xenConsole) Write(p []byte) (int, error) { return len(p), nil }
func (c xenConsole) Close() error                { return c.r.Close() }

// xenELF returns the hypervisor as an ELF file QEMU's multiboot loader
// takes, decompressing a gzip image into the cache once.
func xenELF(path string) (string, error) {
	if path == "" {
		path = DefaultXenImage
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("xen hypervisor image: %w (apt-get install xen-hypervisor-4.17-amd64)", err)
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return "", fmt.Errorf("xen hypervisor image %s: %w", path, err)
	}
	if magic != [2]byte{0x1f, 0x8b} {
		return path, nil
	}
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	dir := cachedir.Dir("xen")
	out := filepath.Join(dir, fmt.Sprintf("%s-%d-%d", strings.TrimSuffix(filepath.Base(path), ".gz"), st.Size(), st.ModTime().Unix()))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f.Seek(0, io.SeekStart)
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("xen hypervisor image %s: %w", path, err)
	}
	if err := fsutil.WriteFrom(out, zr, 0o644); err != nil {
		return "", fmt.Errorf("xen hypervisor image %s: %w", path, err)
	}
	return out, nil
}

func lastConsoleLine(s string) string {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(s, "\r", "")), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); t != "" {
			return t
		}
	}
	return ""
}

// pinning is the hard affinity of guest i with n vCPUs: its own physical
// CPUs after dom0's CPU 0 and the previous guest's.
func pinning(i, n int) string {
	first := 1 + i*n
	if n == 1 {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, first+n-1)
}

// gzipFile writes src gzip-compressed (fastest level) to dst, atomically.
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		_, err := io.Copy(zw, in)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	err = fsutil.WriteFrom(dst, pr, 0o644)
	pr.CloseWithError(err) // stops the compressor if the write failed
	return err
}
