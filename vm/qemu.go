package vm

import (
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

	"github.com/kbisect/kbisect/internal/tailbuf"

	"github.com/digitalocean/go-qemu/qmp"
)

// qbootPath is Debian's qboot ROM (package qemu-system-data): a minimal
// firmware that loads -kernel without SeaBIOS's device scans.
var qbootPath = "/usr/share/qemu/qboot.rom"

// baseAppend is what the QEMU backend puts on every kernel command line,
// before Config.Append (tsc_early_khz= follows under TCG, see tsc.go). These
// options guard against slow or flaky paths under emulation; measured on
// Debian's 6.1 kernel under TCG with -icount shift=0 (guest time then counts
// work, not host load) none of them changes the boot time. cryptomgr.notests
// would save 0.9 s of guest time on Debian's kernel, but there it leaves the
// modular drbg (stdrng) unusable, and ESP's echainiv/seqiv IV generators
// need it: every cbc or gcm SA then fails with ENOENT. kbisect's own builds
// set CONFIG_CRYPTO_MANAGER_DISABLE_TESTS instead. "quiet" saved nothing
// measurable and would hide the warnings a test wants to see, so the kernel
// logs at its default level.
var baseAppend = []string{
	"console=ttyS0",  // the console the log captures (ttyS1 is the agent's)
	"panic=-1",       // reboot at once on panic: with -no-reboot QEMU exits
	"tsc=reliable",   // no clocksource watchdog: a loaded host would otherwise demote the TSC to the slow HPET
	"no_timer_check", // skip the IO-APIC timer check, unreliable under TCG
	"i8042.noaux",    // -nodefaults has no PS/2 controller: skip probing it
	"i8042.nokbd",
	"i8042.nopnp",
	"8250.nr_uarts=2",     // only ttyS0 and ttyS1 exist
	"random.trust_cpu=on", // crng ready at once on kernels that would wait (RDRAND via -cpu max)
}

// tempRoot is where per-guest temp dirs go ("" is os.TempDir); tests
// point it elsewhere to check nothing is left behind.
var tempRoot string

type qemuBackend struct{}

// qemuMachine is one qemu-system-x86_64 process.
type qemuMachine struct {
	cfg     *Config
	args    []string
	cmd     *exec.Cmd
	t0      time.Time
	tmpDir  string
	console *os.File
	agent   *os.File
	stderr  *tailbuf.Buffer

	mon       *qmp.SocketMonitor
	monDone   chan struct{} // closed when the event loop ends
	exited    chan struct{}
	st        exitStatus
	mu        sync.Mutex
	reaped    bool
	cleanOnce sync.Once
}

func (qemuBackend) start(ctx context.Context, cfg *Config, h hooks) (machine, error) {
	bin := cfg.QEMU.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	binPath, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %s not found: install QEMU (apt-get install qemu-system-x86) or set the QEMU binary: %w", cfg.Name, bin, err)
	}
	ki, err := InspectKernel(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", cfg.Name, err)
	}
	kernel := cfg.Kernel
	if ki.Format == FormatELF && !QEMUBootsPVH(ki) {
		why := "without the PVH entry note (CONFIG_PVH, Linux >= 5.0)"
		if ki.PVH {
			why = fmt.Sprintf("of Linux %s, whose PVH entry (CONFIG_XEN_PVH) runs only under Xen", ki.Release)
		}
		return nil, fmt.Errorf("guest %s: %s is a vmlinux %s, which QEMU cannot boot: pass its bzImage", cfg.Name, cfg.Kernel, why)
	}
	if ki.Format == FormatBzImage && !cfg.QEMU.NoPVH {
		img, ok, err := PVHImage(ctx, cfg.Kernel)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("guest %s: %w", cfg.Name, ctx.Err())
		case err != nil:
			// PVH only makes the boot faster: boot the bzImage instead.
			cfg.logf("guest %s: booting the bzImage, not its vmlinux: %v", cfg.Name, err)
		case ok:
			kernel = img
		}
	}
	if cfg.Initrd != "" {
		if _, err := os.Stat(cfg.Initrd); err != nil {
			return nil, fmt.Errorf("guest %s: initramfs: %w", cfg.Name, err)
		}
	}
	accel := resolveAccel(cfg.Accel, cfg.logf)
	firmware, err := resolveFirmware(cfg.QEMU.Firmware)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", cfg.Name, err)
	}

	tmpDir, err := os.MkdirTemp(tempRoot, "kbisect-vm-")
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", cfg.Name, err)
	}
	m := &qemuMachine{cfg: cfg, tmpDir: tmpDir, exited: make(chan struct{}), stderr: tailbuf.New(16 << 10)}
	fail := func(err error) (machine, error) {
		m.cleanup()
		return nil, err
	}
	conHost, conGuest, err := socketPair()
	if err != nil {
		return fail(fmt.Errorf("guest %s: console socketpair: %w", cfg.Name, err))
	}
	m.console = conHost
	defer conGuest.Close()
	agHost, agGuest, err := socketPair()
	if err != nil {
		return fail(fmt.Errorf("guest %s: agent socketpair: %w", cfg.Name, err))
	}
	m.agent = agHost
	defer agGuest.Close()

	extra := []*os.File{conGuest, agGuest}
	for _, nd := range cfg.Netdevs {
		extra = append(extra, nd.File)
	}
	qmpPath := filepath.Join(tmpDir, "qmp.sock")
	setup := qemuSetup{
		kernel:   kernel,
		accel:    accel,
		firmware: firmware,
		qmp:      qmpPath,
	}
	if accel == AccelTCG {
		setup.tsc = tscAppend()
	}
	// A CPU quirk only changes QEMU's TCG default model.
	var why []string
	for _, q := range quirksOf(ki.Release) {
		if q.CPU != "" && (accel != AccelTCG || cfg.QEMU.CPU != "") {
			continue
		}
		setup.cpuQuirk += q.CPU
		setup.nicQuirk += q.NIC
		why = append(why, q.Why)
	}
	if len(why) > 0 {
		cfg.logf("guest %s: Linux %s runs with %s", cfg.Name, ki.Release, strings.Join(why, " and "))
	}
	m.args = qemuArgs(cfg, setup)

	cmd := exec.Command(binPath, m.args...)
	cmd.ExtraFiles = extra
	cmd.Stdin = nil
	cmd.Stdout = m.stderr
	cmd.Stderr = m.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	m.cmd = cmd
	m.t0 = time.Now()
	if err := startPrioritized(cmd, cfg.logf); err != nil {
		return fail(fmt.Errorf("guest %s: start %s: %w", cfg.Name, binPath, err))
	}
	go func() {
		err := cmd.Wait()
		st := exitStatus{code: -1, err: err}
		if ps := cmd.ProcessState; ps != nil {
			st.code = ps.ExitCode()
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				st.signaled = true
				st.err = fmt.Errorf("signal %v", ws.Signal())
			}
		}
		m.mu.Lock()
		m.reaped = true
		m.mu.Unlock()
		st.stderr = strings.TrimSpace(m.stderr.String())
		m.st = st
		close(m.exited)
	}()

	if err := m.connectQMP(ctx, qmpPath, h); err != nil {
		m.kill()
		<-m.exited
		if st := m.st; st.stderr != "" {
			// QEMU's own complaint (a bad option, a missing file) says more
			// than the broken monitor connection.
			return fail(fmt.Errorf("guest %s: qemu did not start: %s", cfg.Name, lastLine(st.stderr)))
		}
		return fail(fmt.Errorf("guest %s: %w", cfg.Name, err))
	}
	return m, nil
}

// connectQMP connects to QEMU's monitor socket, which QEMU creates shortly
// after it starts, and starts the event loop.
func (m *qemuMachine) connectQMP(ctx context.Context, path string, h hooks) error {
	deadline := time.Now().Add(30 * time.Second)
	var mon *qmp.SocketMonitor
	for {
		var err error
		mon, err = qmp.NewSocketMonitor("unix", path, time.Second)
		if err == nil {
			break
		}
		select {
		case <-m.exited:
			return fmt.Errorf("qemu exited at start with status %d", m.st.code)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QMP socket %s: %w", path, err)
		}
	}
	// go-qemu's Connect reads the greeting without a timeout: bound it.
	connected := make(chan error, 1)
	go func() { connected <- mon.Connect() }()
	select {
	case err := <-connected:
		if err != nil {
			mon.Disconnect()
			return fmt.Errorf("QMP handshake: %w", err)
		}
	case <-time.After(30 * time.Second):
		mon.Disconnect()
		<-connected
		return errors.New("QMP handshake timed out")
	case <-m.exited:
		mon.Disconnect()
		<-connected
		return fmt.Errorf("qemu exited at start with status %d", m.st.code)
	}
	events, err := mon.Events(context.Background())
	if err != nil {
		mon.Disconnect()
		return fmt.Errorf("QMP events: %w", err)
	}
	m.mon = mon
	m.monDone = make(chan struct{})
	// The events channel is unbuffered and go-qemu's reader blocks on it:
	// drain it until it closes (after Disconnect), or commands deadlock.
	go func() {
		defer close(m.monDone)
		for ev := range events {
			switch ev.Event {
			case "GUEST_PANICKED":
				h.event(machineEvent{kind: "panic"})
			case "SHUTDOWN":
				reason, _ := ev.Data["reason"].(string)
				h.event(machineEvent{kind: "shutdown", reason: reason})
			}
		}
	}()
	return nil
}

func (m *qemuMachine) consoleConn() io.ReadWriteCloser { return m.console }
func (m *qemuMachine) agentConn() io.ReadCloser        { return m.agent }
func (m *qemuMachine) started() time.Time              { return m.t0 }
func (m *qemuMachine) cmdline() []string {
	return append([]string{m.cmd.Path}, m.args...)
}

func (m *qemuMachine) pid() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

func (m *qemuMachine) wait() exitStatus {
	<-m.exited
	return m.st
}

// quit sends QMP quit (SIGTERM without a monitor); it does not wait.
func (m *qemuMachine) quit() {
	if m.mon != nil {
		// Run can block if QEMU is wedged; it returns when the connection
		// closes at exit or cleanup.
		go m.mon.Run([]byte(`{"execute":"quit"}`))
		return
	}
	m.signal(syscall.SIGTERM)
}

func (m *qemuMachine) kill() { m.signal(syscall.SIGKILL) }

// signal signals QEMU's process group unless it has been reaped (its pid
// could belong to someone else by then).
func (m *qemuMachine) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reaped || m.cmd == nil || m.cmd.Process == nil {
		return
	}
	pid := m.cmd.Process.Pid
	syscall.Kill(-pid, sig)
	syscall.Kill(pid, sig)
}

func (m *qemuMachine) status(ctx context.Context) (string, error) {
	if m.mon == nil {
		return "", errors.New("no QMP connection")
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := m.mon.Run([]byte(`{"execute":"query-status"}`))
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", r.err
		}
		var resp struct {
			Return struct {
				Status string `json:"status"`
			} `json:"return"`
		}
		if err := json.Unmarshal(r.b, &resp); err != nil {
			return "", fmt.Errorf("query-status: %w", err)
		}
		return resp.Return.Status, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-m.exited:
		return "ended", nil
	}
}

func (m *qemuMachine) cleanup() error {
	var err error
	m.cleanOnce.Do(func() {
		if m.mon != nil {
			// QEMU writes its last events (GUEST_PANICKED, when it
			// exits on a panic) just before it exits, and go-qemu's
			// Disconnect drops those its reader has not passed on yet:
			// once QEMU is gone, let the reader reach the end of the
			// socket first (bounded, should anything still hold it).
			select {
			case <-m.exited:
				select {
				case <-m.monDone:
				case <-time.After(5 * time.Second):
				}
			default:
			}
			m.mon.Disconnect()
			<-m.monDone
		}
		if m.console != nil {
			m.console.Close()
		}
		if m.agent != nil {
			m.agent.Close()
		}
		if m.tmpDir != "" {
			err = os.RemoveAll(m.tmpDir)
		}
	})
	return err
}

// qemuSetup is what start resolved before building the command line.
type qemuSetup struct {
	kernel string // the image to pass to -kernel
	// cpuQuirk and nicQuirk are what its release needs appended to the
	// TCG CPU model and to virtio-net's properties (releaseQuirks).
	cpuQuirk, nicQuirk string
	accel              string
	firmware           string // ROM path, "" for QEMU's default
	qmp                string // QMP socket path
	tsc                string // tsc_early_khz= under TCG, or ""
}

// Fixed descriptors in the child: ExtraFiles start at 3.
const (
	fdConsole = 3
	fdAgent   = 4
	fdNetBase = 5
)

// qemuArgs builds the QEMU command line (without the binary).
func qemuArgs(cfg *Config, s qemuSetup) []string {
	machineType := cfg.QEMU.Machine
	if machineType == "" {
		machineType = "pc"
	}

	cpu := cfg.QEMU.CPU
	if cpu == "" {
		cpu = "max" + s.cpuQuirk
		if s.accel == AccelKVM {
			cpu = "host"
		}
	}
	appendLine := strings.Join(baseAppend, " ")
	if s.tsc != "" {
		appendLine += " " + s.tsc
	}
	if cfg.Append != "" {
		appendLine += " " + cfg.Append
	}
	a := []string{
		"-name", cfg.Name,
		"-machine", machineType,
		"-accel", s.accel,
		"-cpu", cpu,
		"-m", fmt.Sprint(cfg.MemoryMB),
		"-smp", fmt.Sprint(cfg.CPUs),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-no-reboot",
		"-action", "panic=exit-failure",
		// ISA pvpanic, found through ACPI, for kernels >= 3.13;
		// pvpanic-pci (Linux >= 5.12) works without ACPI.
		"-device", "pvpanic",
		"-device", "pvpanic-pci",
	}
	if s.firmware != "" {
		a = append(a, "-bios", s.firmware)
	}
	a = append(a, "-kernel", s.kernel)
	if cfg.Initrd != "" {
		a = append(a, "-initrd", cfg.Initrd)
	}
	a = append(a,
		"-append", appendLine,
		"-chardev", fmt.Sprintf("socket,id=console,fd=%d", fdConsole),
		"-serial", "chardev:console",
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", fdAgent),
	)
	a = append(a,
		"-serial", "chardev:agent",
		"-qmp", fmt.Sprintf("unix:%s,server=on,wait=off", s.qmp),
	)
	for i, nd := range cfg.Netdevs {
		fd := fdNetBase + i
		id := fmt.Sprintf("net%d", i)
		switch nd.Kind {
		case NetDgram:
			a = append(a, "-netdev", fmt.Sprintf("dgram,id=%s,local.type=fd,local.str=%d", id, fd))
		case NetTap:
			a = append(a, "-netdev", fmt.Sprintf("tap,id=%s,fd=%d", id, fd))
		}
		model, props := nd.Model, ""
		if model == "" {
			model, props = "virtio-net-pci", s.nicQuirk
		}
		a = append(a, "-device", fmt.Sprintf("%s,netdev=%s,mac=%s%s", model, id, nd.MAC, props))
	}
	return append(a, cfg.QEMU.ExtraArgs...)
}

// resolveFirmware maps Config.QEMU.Firmware to a -bios path ("" for QEMU's
// default SeaBIOS).
func resolveFirmware(fw string) (string, error) {
	switch fw {
	case "":
		if _, err := os.Stat(qbootPath); err == nil {
			return qbootPath, nil
		}
		return "", nil
	case "seabios":
		return "", nil
	case "qboot":
		if _, err := os.Stat(qbootPath); err != nil {
			return "", fmt.Errorf("firmware qboot: %w (apt-get install qemu-system-data)", err)
		}
		return qbootPath, nil
	}
	if _, err := os.Stat(fw); err != nil {
		return "", fmt.Errorf("firmware %q: use qboot, seabios or a ROM file: %w", fw, err)
	}
	return fw, nil
}

// socketPair returns a connected AF_UNIX stream pair: a pollable host end
// and a blocking end for the child.
func socketPair() (host, guest *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest"), nil
}
