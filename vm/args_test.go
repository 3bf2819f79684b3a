package vm

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQEMUArgs(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	tests := []struct {
		name  string
		cfg   Config
		setup qemuSetup
		want  []string // substrings of the joined command line
		not   []string
	}{
		{
			name:  "tcg defaults",
			cfg:   Config{Name: "a", Kernel: "k", Initrd: "i", Append: "kbtest=hello"},
			setup: qemuSetup{kernel: "vmlinux", accel: AccelTCG, firmware: "/q.rom", qmp: "/t/qmp.sock"},
			want: []string{
				"-machine pc -accel tcg -cpu max -m 512 -smp 1",
				"-nodefaults -no-user-config -display none -no-reboot",
				"-action panic=exit-failure -device pvpanic -device pvpanic-pci",
				"-bios /q.rom -kernel vmlinux -initrd i",
				"console=ttyS0 panic=-1 tsc=reliable",
				"random.trust_cpu=on kbtest=hello -chardev",
				"-chardev socket,id=console,fd=3 -serial chardev:console",
				"-chardev socket,id=agent,fd=4 -serial chardev:agent",
				"-qmp unix:/t/qmp.sock,server=on,wait=off",
			},
			not: []string{"-netdev"},
		},
		{
			name:  "tcg, a release without SMAP",
			cfg:   Config{Name: "a", Kernel: "k", Netdevs: []Netdev{{Kind: NetDgram, File: os.Stdin, MAC: mac}}},
			setup: qemuSetup{kernel: "k", cpuQuirk: ",-smap", accel: AccelTCG, qmp: "q"},
			want:  []string{"-accel tcg -cpu max,-smap -m 512", "-device virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03"},
			not:   []string{"event_idx"},
		},
		{
			name:  "a release without virtio's event index",
			cfg:   Config{Name: "a", Kernel: "k", Netdevs: []Netdev{{Kind: NetDgram, File: os.Stdin, MAC: mac}, {Kind: NetTap, File: os.Stdin, MAC: mac, Model: "e1000"}}},
			setup: qemuSetup{kernel: "k", nicQuirk: ",event_idx=off", accel: AccelTCG, qmp: "q"},
			want: []string{"-accel tcg -cpu max -m 512", "-device virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03,event_idx=off",
				"-device e1000,netdev=net1,mac=52:54:00:01:02:03"},
			not: []string{"e1000,netdev=net1,mac=52:54:00:01:02:03,"},
		},
		{
			name:  "kvm, seabios, no initrd, overrides",
			cfg:   Config{Name: "b", Kernel: "k", MemoryMB: 1024, CPUs: 2, QEMU: QEMUOptions{Machine: "q35", ExtraArgs: []string{"-s"}}},
			setup: qemuSetup{kernel: "bzImage", accel: AccelKVM, qmp: "q"},
			want:  []string{"-machine q35 -accel kvm -cpu host -m 1024 -smp 2", "-device pvpanic-pci -kernel bzImage -append", "wait=off -s"},
			not:   []string{"-bios", "-initrd"},
		},
		{
			name: "nics",
			cfg: Config{Name: "c", Kernel: "k", QEMU: QEMUOptions{CPU: "qemu64"}, Netdevs: []Netdev{
				{Kind: NetDgram, File: os.Stdin, MAC: mac},
				{Kind: NetTap, File: os.Stdin, MAC: mac, Model: "e1000"},
			}},
			setup: qemuSetup{kernel: "k", accel: AccelTCG, qmp: "q"},
			want: []string{
				"-cpu qemu64",
				"-netdev dgram,id=net0,local.type=fd,local.str=5 -device virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03",
				"-netdev tap,id=net1,fd=6 -device e1000,netdev=net1,mac=52:54:00:01:02:03",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(qemuArgs(&cfg, tc.setup), " ")
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("command line lacks %q:\n%s", w, line)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(line, n) {
					t.Errorf("command line has %q:\n%s", n, line)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	nds := []Netdev{{Kind: NetDgram, File: os.Stdin}, {Kind: NetDgram, File: os.Stdin}}
	cfg, err := Config{Name: "x", Kernel: "k", Netdevs: nds}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryMB != 512 || cfg.CPUs != 1 || cfg.Accel != AccelAuto || cfg.Hypervisor != QEMU || cfg.StopGrace != 3*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	m0, m1 := cfg.Netdevs[0].MAC, cfg.Netdevs[1].MAC
	if m0.String() == m1.String() || m0[0] != 0x52 || m0[0]&1 != 0 {
		t.Errorf("MACs %s %s: want distinct 52:54:00 unicast addresses", m0, m1)
	}
	if nds[0].MAC != nil {
		t.Errorf("withDefaults changed the caller's Netdevs")
	}
	if other, _ := (Config{Name: "y", Kernel: "k", Netdevs: nds}).withDefaults(); other.Netdevs[0].MAC.String() == m0.String() {
		t.Errorf("guests x and y got the same MAC %s", m0)
	}
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Kernel: "k", MemoryMB: 16}, "too little"},
		{Config{Kernel: "k", CPUs: -1}, "positive"},
		{Config{Kernel: "k", Netdevs: []Netdev{{Kind: "vde", File: os.Stdin}}}, `kind "vde"`},
		{Config{Kernel: "k", Netdevs: []Netdev{{Kind: NetTap, File: os.Stdin, MAC: net.HardwareAddr{1}}}}, "not 6 bytes"},
	}
	for _, b := range bad {
		if _, err := b.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: error %v, want %q", b.cfg, err, b.want)
		}
	}
}

func TestDetectAccel(t *testing.T) {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		if c := DetectAccel(); c.Accel != AccelTCG || !strings.Contains(c.Reason, "KVM unavailable") {
			t.Errorf("without /dev/kvm: %+v", c)
		}
		t.Skip("no usable /dev/kvm: only the no-KVM case can be checked")
	} else {
		f.Close()
	}
	defer func(d string) { sysModuleDir = d }(sysModuleDir)
	tests := []struct {
		modules    []string
		want       string
		wantReason string
	}{
		{[]string{"kvm", "kvm_intel"}, AccelKVM, ""},
		{[]string{"kvm", "kvm_amd"}, AccelKVM, ""},
		{[]string{"kvm", "kvm_pvm"}, AccelTCG, "kvm_pvm"},
		{[]string{"kvm"}, AccelTCG, "no kvm_intel or kvm_amd"},
	}
	for _, tc := range tests {
		sysModuleDir = t.TempDir()
		for _, m := range tc.modules {
			os.Mkdir(filepath.Join(sysModuleDir, m), 0o755)
		}
		c := DetectAccel()
		if c.Accel != tc.want || !strings.Contains(c.Reason, tc.wantReason) {
			t.Errorf("modules %v: %+v, want %s (%s)", tc.modules, c, tc.want, tc.wantReason)
		}
	}
}

func TestConsoleSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, _ := os.Create(path)
	var tee strings.Builder
	c := newConsoleSink(f, &tee)
	// Chunks split a CRLF and the panic line, as serial reads do.
	for _, chunk := range []string{"[ 1.0] booting\r", "\n[ 2.0] Kernel pa", "nic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n", "tail\r", "x"} {
		c.write([]byte(chunk))
	}
	if got := c.panicLine(); got != "Attempted to kill init! exitcode=0x00000100" {
		t.Errorf("panic line %q", got)
	}
	if got := c.tail(2); got != "[ 2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\ntail\rx" {
		t.Errorf("tail %q", got)
	}
	c.close()
	b, _ := os.ReadFile(path)
	if want := "[ 1.0] booting\n[ 2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\ntail\rx"; string(b) != want {
		t.Errorf("log %q, want %q", b, want)
	}
	if !strings.Contains(tee.String(), "\r\n") {
		t.Errorf("the tee should get the raw bytes")
	}
}

// TestConsoleEnd: the sink spots the kernel's last line before a reset or
// power-off, of every kernel kbisect boots, and nothing else.
func TestConsoleEnd(t *testing.T) {
	tests := []struct {
		line, how string // how "": not an end
	}{
		{"[    2.072775] reboot: Restarting system", "guest rebooted"},       // 3.14, 6.1
		{"[    2.072912] reboot: machine restart", "guest rebooted"},         // x86, after it
		{"[    1.234567] Restarting system.", "guest rebooted"},              // 2.6.32
		{"Restarting system with command 'kexec'.", "guest rebooted"},        // no timestamp
		{"[   10.000000] reboot: Power down", "guest powered off"},           // 3.14, 6.1
		{"[   10.000000] Power down.", "guest powered off"},                  // 2.6.32
		{"[   10.000000] reboot: System halted", "guest halted"},             // 3.14, 6.1
		{"testinit: Restarting system soon", ""},                             // a program's words
		{"[    0.100000] ACPI: Power down button", ""},                       // a device, not the end
		{"[    0.200000] Kernel panic - not syncing: Restarting system", ""}, // a panic, counted apart
		{"[    3.000000] reboot: Restarting systemd-networkd", ""},           // not the word
	}
	for _, tc := range tests {
		var got []string
		c := newConsoleSink(nil, nil)
		c.onEnd = func(how, evidence string) { got = append(got, how+" | "+evidence) }
		c.write([]byte("\r\n" + tc.line + "\r\n"))
		switch {
		case tc.how == "" && len(got) > 0:
			t.Errorf("%q: seen as the end: %q", tc.line, got)
		case tc.how != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.how+" | ") || !strings.Contains(got[0], strings.TrimSpace(tc.line))):
			t.Errorf("%q: got %q, want %q with the line as evidence", tc.line, got, tc.how)
		}
	}
}

func TestLineQueue(t *testing.T) {
	q := newLineQueue()
	out := make(chan string)
	abandon := make(chan struct{})
	go q.forward(out, abandon)
	for i := 0; i < 1000; i++ { // never blocks, however slow the reader
		q.push(strings.Repeat("x", i%7))
	}
	q.close()
	n := 0
	for s := range out {
		if len(s) != n%7 {
			t.Fatalf("line %d out of order: %q", n, s)
		}
		n++
	}
	if n != 1000 {
		t.Errorf("%d lines delivered, want 1000", n)
	}
	// Abandoning stops the forwarder even if nobody reads.
	q2, out2, ab2 := newLineQueue(), make(chan string), make(chan struct{})
	q2.push("unread")
	done := make(chan struct{})
	go func() { q2.forward(out2, ab2); close(done) }()
	close(ab2)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("forwarder did not stop when abandoned")
	}
}

func TestHostTSC(t *testing.T) {
	if !haveTSC {
		t.Skip("no TSC on this architecture")
	}
	k := hostTSCKHz()
	if k < 100_000 || k > 10_000_000 || k%1000 != 0 {
		t.Fatalf("host TSC %d kHz: want a whole number of MHz between 100 MHz and 10 GHz", k)
	}
	if got := tscAppend(); got != fmt.Sprintf("tsc_early_khz=%d", k) {
		t.Errorf("tscAppend = %q", got)
	}
	cfg, _ := Config{Name: "t", Kernel: "k", Append: "x=1"}.withDefaults()
	line := strings.Join(qemuArgs(&cfg, qemuSetup{kernel: "k", accel: AccelTCG, tsc: tscAppend()}), " ")
	if !strings.Contains(line, "random.trust_cpu=on tsc_early_khz=") || !strings.Contains(line, "000 x=1") {
		t.Errorf("command line lacks tsc_early_khz before Append:\n%s", line)
	}
}

// TestReleaseQuirks: each quirk applies to its releases only, to the CPU
// model TCGCPU gives (LAVA's too), to virtio-net and to the PVH boot; a
// release that cannot be read gets none.
func TestReleaseQuirks(t *testing.T) {
	for _, tc := range []struct {
		release, cpu, nic string
		pvh               bool // QEMU boots the release's PVH note
	}{
		{"2.6.32.2", "max", "", true},
		{"2.6.39", "max", "", true},
		{"3.0.0", "max", ",event_idx=off", true},
		{"3.1.10", "max", ",event_idx=off", true},
		{"3.2.4", "max", "", true},
		{"3.7.2", "max,-smap", "", true},
		{"3.8.0", "max,-smap", "", true},
		{"3.13.11-rc1", "max,-smap", "", true},
		{"3.14.5", "max", "", true},
		{"4.11.0", "max", "", false},
		{"4.14.5", "max", "", false},
		{"4.19.78", "max", "", false},
		{"5.0.0", "max", "", true},
		{"5.4.0", "max", "", true},
		{"6.1.0-57-amd64", "max", "", true},
		{"", "max", "", true},
		{"not a release", "max", "", true},
	} {
		var nic string
		for _, q := range quirksOf(tc.release) {
			nic += q.NIC
			if q.Why == "" {
				t.Errorf("release %q: a quirk without a reason", tc.release)
			}
		}
		if cpu := TCGCPU(tc.release); cpu != tc.cpu || nic != tc.nic {
			t.Errorf("release %q: -cpu %q, virtio-net %q; want %q, %q", tc.release, cpu, nic, tc.cpu, tc.nic)
		}
		if got := QEMUBootsPVH(&KernelInfo{Release: tc.release, PVH: true}); got != tc.pvh {
			t.Errorf("release %q with a PVH note: QEMU boots it through PVH %v, want %v", tc.release, got, tc.pvh)
		}
		if QEMUBootsPVH(&KernelInfo{Release: tc.release}) {
			t.Errorf("release %q without a PVH note: QEMU boots it through PVH", tc.release)
		}
	}
}
