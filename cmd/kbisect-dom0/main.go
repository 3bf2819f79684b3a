// Command kbisect-dom0 is the controller of a Xen dom0 that runs kbisect's
// guest pair as domUs: as /init of the nested dom0 kbisect boots under QEMU,
// it mounts xenfs, loads the backend modules, starts xenstored and
// xenconsoled, builds the wire (one bridge, or two with a masquerading NAT
// between them), creates the domUs from the Plan (package vm/xenctl) with
// `xl create -F`, relays their consoles and fates to the host on its own
// console, and powers dom0 off when they are gone.
//
// Invoked by libxl as a vif hotplug script (argument online/offline/add/
// remove, XENBUS_PATH set), it attaches the vif to its bridge and tells
// netback the device is connected.
package main

import (
	"bufio"
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
	"time"

	"github.com/kbisect/kbisect/vm/xenctl"
	"golang.org/x/sys/unix"
)

// Paths of the Xen 4.17 toolstack as Debian installs it.
const (
	xenBin     = "/usr/lib/xen-4.17/bin"
	consoleDir = "/var/log/xen/console"
)

func main() {
	if len(os.Args) > 1 && os.Getenv("XENBUS_PATH") != "" {
		os.Exit(hotplug(os.Args[1]))
	}
	c := &controller{out: os.Stdout}
	err := c.run()
	if err != nil {
		c.send(xenctl.Controller, xenctl.KindError, err.Error())
	}
	c.send(xenctl.Controller, xenctl.KindDone, "")
	if os.Getpid() == 1 {
		unix.Sync()
		time.Sleep(100 * time.Millisecond)
		unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
	if err != nil {
		os.Exit(1)
	}
}

// controller runs one Plan.
type controller struct {
	mu   sync.Mutex
	out  io.Writer
	plan xenctl.Plan
}

func (c *controller) send(guest, kind, text string) {
	line := xenctl.Line{Guest: guest, Kind: kind, Text: strings.ReplaceAll(text, "\n", " | ")}.Format()
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.out, line+"\n")
}

func (c *controller) logf(format string, args ...any) {
	c.send(xenctl.Controller, xenctl.KindLog, fmt.Sprintf(format, args...))
}

func (c *controller) run() error {
	t0 := time.Now()
	if os.Getpid() == 1 {
		setupSystem()
		makeRaw(os.Stdin)
		makeRaw(os.Stdout)
	}
	b, err := os.ReadFile(xenctl.PlanPath)
	if err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	if err := json.Unmarshal(b, &c.plan); err != nil {
		return fmt.Errorf("parse plan %s: %w", xenctl.PlanPath, err)
	}
	for _, err := range loadModules(c.plan.Modules) {
		c.logf("%v", err)
	}
	if err := c.startXen(); err != nil {
		return err
	}
	if err := c.setupWire(); err != nil {
		return fmt.Errorf("wire: %w", err)
	}
	var caps *captures
	if c.plan.Capture && c.plan.ShareTag != "" {
		caps = c.startCaptures()
	}
	c.send(xenctl.Controller, xenctl.KindReady, fmt.Sprintf("dom0 ready after %.1fs", time.Since(t0).Seconds()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.readCommands(ctx)
	var wg sync.WaitGroup
	for _, d := range c.plan.DomUs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runDomU(ctx, d, caps)
		}()
	}
	wg.Wait()
	if caps != nil {
		caps.close()
	}
	return nil
}

// startXen mounts xenfs and starts xenstored and xenconsoled.
func (c *controller) startXen() error {
	os.MkdirAll("/proc/xen", 0o755)
	if err := unix.Mount("xenfs", "/proc/xen", "xenfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount xenfs: %w (is this a Xen dom0 with the xenfs module?)", err)
	}
	caps, _ := os.ReadFile("/proc/xen/capabilities")
	if !strings.Contains(string(caps), "control_d") {
		return errors.New("not running as Xen dom0 (/proc/xen/capabilities lacks control_d)")
	}
	// xl reads its global settings; the defaults are what we want.
	os.MkdirAll("/etc/xen", 0o755)
	if _, err := os.Stat("/etc/xen/xl.conf"); err != nil {
		os.WriteFile("/etc/xen/xl.conf", nil, 0o644)
	}
	for _, d := range []string{"/var/run/xen", "/var/run/xenstored", "/var/lib/xenstored", "/var/lib/xen", "/var/log/xen", consoleDir, "/run/xen"} {
		os.MkdirAll(d, 0o755)
	}
	if _, err := os.Stat("/var/run/xenstored/socket"); err != nil {
		xs := exec.Command(filepath.Join(xenBin, "xenstored"), "--no-fork", "--pid-file=/var/run/xenstored.pid", "--internal-db")
		xs.Stdout, xs.Stderr = os.Stderr, os.Stderr
		if err := xs.Start(); err != nil {
			return fmt.Errorf("start xenstored: %w", err)
		}
		if err := waitFor("/var/run/xenstored/socket", 20*time.Second); err != nil {
			return fmt.Errorf("xenstored: %w", err)
		}
		if out, err := exec.Command(filepath.Join(xenBin, "xen-init-dom0")).CombinedOutput(); err != nil {
			return fmt.Errorf("xen-init-dom0: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	cons := exec.Command(filepath.Join(xenBin, "xenconsoled"), "-i", "--log=guest", "--log-dir="+consoleDir, "--pid-file=/var/run/xen/xenconsoled.pid")
	cons.Stdout, cons.Stderr = os.Stderr, os.Stderr
	if err := cons.Start(); err != nil {
		return fmt.Errorf("start xenconsoled: %w", err)
	}
	return nil
}

// runDomU creates one domU, relays its console until it is gone and reports
// how it ended.
func (c *controller) runDomU(ctx context.Context, d xenctl.DomU, caps *captures) {
	cfgPath := filepath.Join("/tmp", d.Name+".cfg")
	if err := os.WriteFile(cfgPath, []byte(xlConfig(d)), 0o644); err != nil {
		c.send(d.Name, xenctl.KindError, err.Error())
		return
	}
	logPath := filepath.Join(consoleDir, "guest-"+d.Name+".log")
	// xl create -F stays in the foreground until the domain is gone.
	cmd := exec.Command(filepath.Join(xenBin, "xl"), "create", "-F", cfgPath)
	var out strings.Builder
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		c.send(d.Name, xenctl.KindError, fmt.Sprintf("xl create: %v", err))
		return
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			out.WriteString(line + "\n")
			c.mu.Unlock()
			c.logf("%s: xl: %s", d.Name, line)
		}
	}()
	caps.add(d.Vif, d.Pcap)
	tailCtx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		c.tail(tailCtx, d.Name, logPath)
	}()
	started := make(chan struct{})
	go func() {
		// The domain exists once xl list knows it.
		for i := 0; i < 600; i++ {
			if id, err := exec.Command(filepath.Join(xenBin, "xl"), "domid", d.Name).Output(); err == nil {
				c.send(d.Name, xenctl.KindStarted, strings.TrimSpace(string(id)))
				close(started)
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-tailDone:
				return
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	// Let the last console bytes reach the log and the host.
	time.Sleep(300 * time.Millisecond)
	stopTail()
	<-tailDone
	c.mu.Lock()
	msg := strings.TrimSpace(out.String())
	c.mu.Unlock()
	select {
	case <-started:
	default:
		if err == nil {
			err = errors.New("the domain never appeared")
		}
	}
	// xl create -F exits 0 once the domain is gone after its own shutdown,
	// reboot or crash (all "destroy"); anything else is xl failing, maybe
	// after the domain briefly existed (a kernel its loader rejects).
	if err != nil {
		c.send(d.Name, xenctl.KindError, fmt.Sprintf("xl create failed (%v): %s", err, xlErrors(msg)))
		return
	}
	c.send(d.Name, xenctl.KindExit, "exit 0: "+lastLines(msg, 3))
}

// xlErrors picks xl's error lines from its output (the first ones say what
// went wrong; the rest is clean-up), or its last lines.
func xlErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "error") && len(errs) < 3 {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return lastLines(out, 4)
	}
	return strings.Join(errs, " | ")
}

// xlConfig is the xl domain configuration of d.
func xlConfig(d xenctl.DomU) string {
	var b strings.Builder
	typ := d.Type
	if typ == "" {
		typ = "pv"
	}
	fmt.Fprintf(&b, "name = %q\ntype = %q\n", d.Name, typ)
	fmt.Fprintf(&b, "kernel = %q\n", d.Kernel)
	if d.Ramdisk != "" {
		fmt.Fprintf(&b, "ramdisk = %q\n", d.Ramdisk)
	}
	fmt.Fprintf(&b, "cmdline = %q\n", d.Cmdline)
	fmt.Fprintf(&b, "memory = %d\nvcpus = %d\n", d.MemoryMB, max(d.VCPUs, 1))
	if d.CPUs != "" {
		fmt.Fprintf(&b, "cpus = %q\n", d.CPUs)
	}
	self, _ := os.Executable()
	if self == "" {
		self = "/init"
	}
	fmt.Fprintf(&b, "vif = [ 'mac=%s,bridge=%s,vifname=%s,script=%s' ]\n", d.MAC, d.Bridge, d.Vif, self)
	b.WriteString("on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n")
	if typ == "hvm" {
		b.WriteString("serial = \"pty\"\nvga = \"none\"\nvnc = 0\nsdl = 0\n")
	}
	return b.String()
}

// tail relays the lines of a domU's console log as they are written.
func (c *controller) tail(ctx context.Context, guest, path string) {
	var f *os.File
	var partial []byte
	buf := make([]byte, 32<<10)
	for {
		if f == nil {
			f, _ = os.Open(path)
		}
		progressed := false
		if f != nil {
			n, _ := f.Read(buf)
			if n > 0 {
				progressed = true
				partial = append(partial, buf[:n]...)
				for {
					i := strings.IndexByte(string(partial), '\n')
					if i < 0 {
						break
					}
					c.send(guest, xenctl.KindConsole, strings.TrimRight(string(partial[:i]), "\r"))
					partial = partial[i+1:]
				}
			}
		}
		if !progressed {
			select {
			case <-ctx.Done():
				if len(partial) > 0 {
					c.send(guest, xenctl.KindConsole, string(partial))
				}
				if f != nil {
					f.Close()
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// readCommands executes the host's commands from the console.
func (c *controller) readCommands(ctx context.Context) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == xenctl.CmdDestroy {
			out, err := exec.CommandContext(ctx, filepath.Join(xenBin, "xl"), "destroy", f[1]).CombinedOutput()
			if err != nil {
				c.logf("xl destroy %s: %v: %s", f[1], err, strings.TrimSpace(string(out)))
			}
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func waitFor(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
