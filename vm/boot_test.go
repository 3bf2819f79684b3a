package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBootHello(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t, "hello", testInitramfs(t), "hello")
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	line, wall := firstLine(t, g)
	t.Logf("first agent line after %v: %s", wall, line)
	if !strings.HasPrefix(line, "KBISECT-EVENT ") || !strings.Contains(line, `"hello"`) {
		t.Errorf("agent line %q is not the init's event", line)
	}
	if st, err := g.Status(testCtx(t)); err != nil || (st != "running" && st != "ended") {
		t.Errorf("Status = %q, %v; want running", st, err)
	}
	o := g.Wait()
	if o.Kind != ExitClean || o.Err() != nil {
		t.Fatalf("outcome %+v, want clean", o)
	}
	if o.Reason != "guest rebooted" {
		t.Errorf("reason %q, want guest rebooted", o.Reason)
	}
	if _, ok := <-g.Lines(); ok {
		t.Errorf("a second agent line arrived")
	}
	log, err := os.ReadFile(cfg.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Linux version", "Run /init as init process", "testinit: KBISECT-EVENT", "reboot: Restarting system"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("console log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(string(log), "Marking TSC unstable") {
		t.Errorf("the guest lost its TSC clocksource:\n%s", grepLines(string(log), "tsc"))
	}
	// CRLF pairs become LF (TestConsoleSink). A CR the guest sent without
	// an LF after it stays: 1 boot in 60 beside six busy loops had one,
	// where kernel messages and init's output share the UART.
	if strings.Contains(string(log), "\r\n") {
		t.Errorf("console log has CRLF line ends")
	}
	// -cpu max under TCG gives the guest's crypto its instructions.
	if strings.Contains(strings.Join(g.Cmdline(), " "), "-accel tcg -cpu max") {
		if !strings.Contains(string(log), "cpu flags: aes pclmulqdq avx2") {
			t.Errorf("-cpu max guest lacks AES-NI/PCLMUL/AVX2:\n%s", grepLines(string(log), "cpu flags"))
		}
	}
	assertGone(t, g)
	if err := g.Close(); err != nil {
		t.Errorf("Close after exit: %v", err)
	}
}

// TestExitGrace: a hypervisor that stays up after the guest has rebooted
// (QEMU told to pause on the guest's shutdown instead of exiting, as QEMU
// once in about a hundred boots did on its own) is stopped ExitGrace after
// the kernel's last line, and the guest's end counts as clean, not as the
// timeout it used to be.
func TestExitGrace(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t, "exitgrace", testInitramfs(t), "hello")
	cfg.QEMU.ExtraArgs = []string{"-action", "shutdown=pause"}
	cfg.ExitGrace = 2 * time.Second
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	o := g.Wait()
	if o.Kind != ExitClean || o.Err() != nil {
		t.Fatalf("outcome %s (%v), want clean\nconsole:\n%s", o.Kind, o.Err(), o.ConsoleTail)
	}
	for _, want := range []string{"guest rebooted (", "the hypervisor did not exit within 2s and was stopped"} {
		if !strings.Contains(o.Reason, want) {
			t.Errorf("reason %q lacks %q", o.Reason, want)
		}
	}
	assertGone(t, g)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPanic: an init that exits panics the kernel ("Attempted to kill
// init"). With the pvpanic driver loaded QEMU reports GUEST_PANICKED and
// exits; without it the console's "Kernel panic" line and panic=-1's reboot
// make the same outcome.
func TestPanic(t *testing.T) {
	needQEMU(t)
	ki, err := InspectKernel(testKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		machine  string
		modules  []string
		viaQMP   bool // GUEST_PANICKED expected
		wantCode int
	}{
		{name: "console", wantCode: 0},
		{name: "pvpanic isa", modules: []string{"pvpanic_mmio"}, viaQMP: true, wantCode: 1},
		{name: "pvpanic pci", modules: []string{"pvpanic_pci"}, viaQMP: true, wantCode: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mods []string
			if len(tc.modules) > 0 {
				mods = modulesFor(t, ki.Release, tc.modules...)
			}
			cfg := testConfig(t, "panic", testInitramfs(t, mods...), "panic")
			cfg.QEMU.Machine = tc.machine
			g, err := Start(testCtx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			o := g.Wait()
			err = o.Err()
			if o.Kind != ExitPanic || !errors.Is(err, ErrPanic) {
				t.Fatalf("outcome %s (%v), want panic\nconsole:\n%s", o.Kind, err, o.ConsoleTail)
			}
			if !strings.Contains(o.Reason, "Attempted to kill init") || !strings.Contains(err.Error(), "kernel panic: Attempted to kill init") {
				t.Errorf("reason %q / error %q lack the panic message", o.Reason, err)
			}
			if !strings.Contains(o.ConsoleTail, "Kernel panic - not syncing") {
				t.Errorf("console tail lacks the panic:\n%s", o.ConsoleTail)
			}
			g.mu.Lock()
			viaQMP := g.panicked
			g.mu.Unlock()
			if viaQMP != tc.viaQMP || o.ExitCode != tc.wantCode {
				t.Errorf("GUEST_PANICKED seen %v, exit code %d; want %v, %d", viaQMP, o.ExitCode, tc.viaQMP, tc.wantCode)
			}
			assertGone(t, g)
		})
	}
}

func TestTimeout(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t, "timeout", testInitramfs(t), "hang")
	cfg.Timeout = 2 * time.Second
	start := time.Now()
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	o := g.Wait()
	if o.Kind != ExitTimeout || !errors.Is(o.Err(), ErrTimeout) {
		t.Fatalf("outcome %s (%v), want timeout", o.Kind, o.Err())
	}
	if !strings.Contains(o.Err().Error(), "timeout after 2s") {
		t.Errorf("error %q does not say timeout after 2s", o.Err())
	}
	if d := time.Since(start); d > cfg.Timeout+cfg.StopGrace+10*time.Second {
		t.Errorf("timeout took %v", d)
	}
	assertGone(t, g)
}

// TestContextDeadline: a context deadline is a timeout too.
func TestContextDeadline(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t, "deadline", testInitramfs(t), "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if o := g.Wait(); o.Kind != ExitTimeout {
		t.Fatalf("outcome %s (%v), want timeout", o.Kind, o.Err())
	}
	assertGone(t, g)
}

// TestHygiene: after Close of a running guest, and after a context
// cancelled mid-boot, no QEMU process of ours remains and the temp dirs are
// gone.
func TestHygiene(t *testing.T) {
	needQEMU(t)
	initrd := testInitramfs(t)
	t.Run("close", func(t *testing.T) {
		g, err := Start(testCtx(t), testConfig(t, "close", initrd, "hang"))
		if err != nil {
			t.Fatal(err)
		}
		firstLine(t, g)
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		o := g.Wait()
		if o.Kind != ExitKilled || !errors.Is(o.Err(), ErrKilled) {
			t.Errorf("outcome %s (%v), want killed", o.Kind, o.Err())
		}
		if o.ExitCode != 0 {
			t.Errorf("QMP quit should end QEMU with status 0, got %d", o.ExitCode)
		}
		assertGone(t, g)
	})
	t.Run("cancel mid-boot", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		g, err := Start(ctx, testConfig(t, "cancel", initrd, "hang"))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		time.Sleep(500 * time.Millisecond)
		cancel()
		o := g.Wait()
		if o.Kind != ExitKilled || !strings.Contains(o.Reason, "cancel") {
			t.Errorf("outcome %s (%q), want killed by cancellation", o.Kind, o.Reason)
		}
		assertGone(t, g)
	})
	t.Run("stop", func(t *testing.T) {
		g, err := Start(testCtx(t), testConfig(t, "stop", initrd, "hang"))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		firstLine(t, g)
		if err := g.Stop(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if o := g.Wait(); o.Kind != ExitKilled {
			t.Errorf("outcome %s, want killed", o.Kind)
		}
		if st, err := g.Status(testCtx(t)); st != "ended" || err != nil {
			t.Errorf("Status after stop = %q, %v", st, err)
		}
		assertGone(t, g)
	})
}

func TestStartErrors(t *testing.T) {
	needQEMU(t)
	initrd := testInitramfs(t)
	text := t.TempDir() + "/README"
	os.WriteFile(text, []byte("hello\n"), 0o644)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"not a kernel", func(c *Config) { c.Kernel = text }, "is not a Linux kernel image"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "no kernel image given"},
		{"missing initrd", func(c *Config) { c.Initrd = "/nonexistent/initrd" }, "initramfs"},
		{"bad accel", func(c *Config) { c.Accel = "hvf" }, "use auto, kvm or tcg"},
		{"bad hypervisor", func(c *Config) { c.Hypervisor = "bhyve" }, `hypervisor "bhyve" is not supported`},
		{"no qemu", func(c *Config) { c.QEMU.Binary = "/nonexistent/qemu" }, "install QEMU"},
		{"netdev without file", func(c *Config) { c.Netdevs = []Netdev{{Kind: NetDgram}} }, "has no open file"},
		{"qemu rejects", func(c *Config) { c.QEMU.ExtraArgs = []string{"-device", "no-such-device"} }, "no-such-device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tempRoot = t.TempDir()
			defer func() { tempRoot = "" }()
			cfg := testConfig(t, "err", initrd, "hello")
			tc.mod(&cfg)
			g, err := Start(testCtx(t), cfg)
			if err == nil {
				g.Close()
				t.Fatalf("Start succeeded, want an error with %q", tc.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line with %q", err, tc.want)
			}
			if left, _ := os.ReadDir(tempRoot); len(left) > 0 {
				t.Errorf("%d temp dirs left behind", len(left))
			}
			if _, err := os.Stat(cfg.ConsoleLog); !os.IsNotExist(err) {
				t.Errorf("console log %s left behind (%v)", cfg.ConsoleLog, err)
			}
		})
	}
}

// TestMachines: each supported machine type boots, gives the agent its
// channel and the guest a virtio NIC.
func TestMachines(t *testing.T) {
	needQEMU(t)
	ki, err := InspectKernel(testKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	initrd := testInitramfs(t, modulesFor(t, ki.Release, "virtio_pci", "virtio_net")...)
	for _, machine := range []string{"pc", "q35"} {
		t.Run(machine, func(t *testing.T) {
			wire, _ := dgramWire(t)
			cfg := testConfig(t, machine, initrd, "ping")
			cfg.QEMU.Machine = machine
			cfg.Netdevs = []Netdev{{Kind: NetDgram, File: wire}}
			g, err := Start(testCtx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for l := range g.Lines() {
				if strings.Contains(l, `"type":"eth0"`) {
					if err := g.Close(); err != nil {
						t.Fatal(err)
					}
					assertGone(t, g)
					return
				}
			}
			o := g.Wait()
			t.Fatalf("no eth0 line; %v\n%s", o.Err(), o.ConsoleTail)
		})
	}
}

// TestHostKilled: when the process running the guest dies without cleaning
// up (SIGKILL), QEMU dies with it (Pdeathsig).
func TestHostKilled(t *testing.T) {
	needQEMU(t)
	if os.Getenv("KBISECT_VM_HELPER") != "" {
		t.Skip("helper")
	}
	initrd := testInitramfs(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGuest$", "-test.v")
	cmd.Env = append(os.Environ(), "KBISECT_VM_HELPER=1", "KBISECT_VM_HELPER_INITRD="+initrd, "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(strings.TrimSpace(sc.Text()), "qemu-pid %d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatal("helper did not report a QEMU pid")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("QEMU %d not running before the host is killed: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("QEMU %d survived its host process by 10s", pid)
}

// TestHelperGuest is TestHostKilled's child: it starts a guest, prints
// QEMU's pid and waits to be killed.
func TestHelperGuest(t *testing.T) {
	initrd := os.Getenv("KBISECT_VM_HELPER_INITRD")
	if os.Getenv("KBISECT_VM_HELPER") == "" || initrd == "" {
		t.Skip("only run by TestHostKilled")
	}
	cfg := testConfig(t, "orphan", initrd, "hang")
	cfg.Timeout = time.Minute
	g, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("qemu-pid %d\n", g.m.pid())
	g.Wait()
}
