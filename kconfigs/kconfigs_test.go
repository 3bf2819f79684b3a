package kconfigs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		bad  bool
	}{
		{in: "3.14.5", want: V(3, 14, 5)},
		{in: "v2.6.32", want: V(2, 6, 32)},
		{in: "2.6.32.2", want: V(2, 6, 32)},
		{in: "6.1", want: V(6, 1, 0)},
		{in: "v6.1-rc3", want: V(6, 1, 0)},
		{in: "6", bad: true},
		{in: "x.y", bad: true},
	} {
		got, err := ParseVersion(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMakefileVersion(t *testing.T) {
	for _, tc := range []struct {
		mk   string
		want Version
		bad  bool
	}{
		{mk: "VERSION = 2\nPATCHLEVEL = 6\nSUBLEVEL = 32\nEXTRAVERSION = .2\n", want: V(2, 6, 32)},
		{mk: "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\nNAME = Curry\n", want: V(6, 1, 192)},
		{mk: "VERSION = 3\nPATCHLEVEL = 14\nSUBLEVEL =\n", want: V(3, 14, 0)},
		{mk: "all:\n\techo\n", bad: true},
	} {
		got, err := MakefileVersion([]byte(tc.mk))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("MakefileVersion(%q) = %v, %v; want %v", tc.mk, got, err, tc.want)
		}
	}
}

func TestRange(t *testing.T) {
	r := Range{From: V(3, 7, 0), Until: V(5, 2, 0)}
	for _, tc := range []struct {
		v    Version
		want bool
	}{
		{V(3, 6, 11), false}, {V(3, 7, 0), true}, {V(4, 19, 0), true}, {V(5, 2, 0), false}, {V(6, 1, 0), false},
	} {
		if got := r.Contains(tc.v); got != tc.want {
			t.Errorf("%v contains %v = %v, want %v", r, tc.v, got, tc.want)
		}
	}
	if !(Range{}).Contains(V(2, 6, 32)) {
		t.Error("empty range must contain everything")
	}
	if UpdateTarget(V(3, 6, 0)) != "oldconfig" || UpdateTarget(V(3, 7, 0)) != "olddefconfig" {
		t.Error("UpdateTarget: olddefconfig exists since 3.7")
	}
	if b, _ := BaseTarget(V(3, 14, 5), "tinyconfig"); b != "allnoconfig" {
		t.Errorf("tinyconfig on 3.14 = %s, want allnoconfig", b)
	}
	if _, err := BaseTarget(V(6, 1, 0), "smallconfig"); err == nil {
		t.Error("unknown base accepted")
	}
}

func TestConfigRoundTrip(t *testing.T) {
	in := "#\n# Automatically generated\n#\nCONFIG_64BIT=y\n# CONFIG_SMP is not set\nCONFIG_LOCALVERSION=\"-kb\"\nCONFIG_NR_CPUS=8\nCONFIG_XFRM=m\n\n"
	c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "CONFIG_64BIT=y\n# CONFIG_SMP is not set\nCONFIG_LOCALVERSION=\"-kb\"\nCONFIG_NR_CPUS=8\nCONFIG_XFRM=m\n"
	if got := string(c.Bytes()); got != want {
		t.Errorf("round trip:\n%s\nwant:\n%s", got, want)
	}
	if c.Value("SMP") != "n" || c.Value("ABSENT") != "n" || c.Value("CONFIG_XFRM") != "m" {
		t.Error("Value")
	}
	if _, err := ParseConfig([]byte("CONFIG_A=y\nthis is not a config\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: err = %v", err)
	}
	if _, err := ReadConfig(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestDiff(t *testing.T) {
	a, _ := ParseConfig([]byte("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_S=\"x\"\n"))
	b, _ := ParseConfig([]byte("CONFIG_A=y\nCONFIG_B=m\nCONFIG_D=y\n# CONFIG_E is not set\n"))
	got := Diff(a, b)
	want := []Change{
		{Symbol: "B", Old: "y", New: "m"},
		{Symbol: "D", New: "y"},
		{Symbol: "S", Old: `"x"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
}

func TestMerge(t *testing.T) {
	base, _ := ParseConfig([]byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_KEEP=y\n"))
	f1, _ := ParseFragment("f1", []byte("CONFIG_B=y\nCONFIG_C=m\nCONFIG_NEW=y\n"))
	f2, _ := ParseFragment("f2", []byte("# CONFIG_A is not set\nCONFIG_NEW=m\n# CONFIG_ABSENT is not set\n"))
	out, changes := Merge(base, f1, f2)
	if got, want := string(out.Bytes()), "# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_C=m\nCONFIG_KEEP=y\nCONFIG_NEW=m\n# CONFIG_ABSENT is not set\n"; got != want {
		t.Errorf("merged:\n%s\nwant:\n%s", got, want)
	}
	want := []Change{
		{Symbol: "B", Old: "n", New: "y", Source: "f1"},
		{Symbol: "NEW", New: "m", Source: "f2"},
		{Symbol: "A", Old: "y", New: "n", Source: "f2"},
	}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("changes = %v\nwant %v", changes, want)
	}
	if base.Value("A") != "y" {
		t.Error("Merge modified its base")
	}
}

func TestBuiltinFragments(t *testing.T) {
	names := BuiltinNames()
	for _, want := range []string{"agent", "debug", "natt-esp", "qemu-x86_64", "xen-guest"} {
		if _, err := Builtin(want); err != nil {
			t.Errorf("%s: %v (have %v)", want, err, names)
		}
	}
	if _, err := Builtin("nope"); err == nil || !strings.Contains(err.Error(), "natt-esp") {
		t.Errorf("unknown fragment: err = %v", err)
	}
	// Every gate names a symbol some fragment uses, once.
	used := map[string]bool{}
	for _, n := range names {
		f, _ := Builtin(n)
		for _, s := range f.Settings {
			used[s.Symbol] = true
		}
	}
	seen := map[string]bool{}
	for _, g := range Gates {
		if !used[g.Symbol] {
			t.Errorf("gate for %s, which no built-in fragment sets", g.Symbol)
		}
		if seen[g.Symbol] {
			t.Errorf("two gates for %s", g.Symbol)
		}
		seen[g.Symbol] = true
		if g.Why == "" {
			t.Errorf("gate for %s does not say why", g.Symbol)
		}
	}
	// The facts the agent and the test depend on.
	keep, _ := For(V(6, 1, 0), Defaults()...)
	have := map[string]string{}
	for _, s := range keep {
		have[s.Symbol] = s.Value
	}
	for _, s := range []string{"EVENTFD", "FUTEX", "EPOLL", "SERIAL_8250_CONSOLE", "VIRTIO_NET", "VIRTIO_PCI",
		"XFRM_USER", "INET_ESP", "CRYPTO_AUTHENC", "CRYPTO_GCM", "CRYPTO_CBC", "CRYPTO_HMAC", "CRYPTO_SHA1",
		"BLK_DEV_INITRD", "DEVTMPFS_MOUNT", "BINFMT_ELF", "PVH"} {
		if have[s] != "y" {
			t.Errorf("default fragments for 6.1 lack CONFIG_%s=y", s)
		}
	}
	if f, _ := Resolve("natt-esp"); f == nil || f.Name != "natt-esp" {
		t.Error("Resolve(natt-esp)")
	}
	file := filepath.Join(t.TempDir(), "my.config")
	os.WriteFile(file, []byte("CONFIG_FOO=y\n"), 0o644)
	if f, err := Resolve(file); err != nil || f.Settings[0].Symbol != "FOO" {
		t.Errorf("Resolve(file) = %v, %v", f, err)
	}
}

// TestSelect checks which fragments a build gets from the flags.
func TestSelect(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mine.config")
	os.WriteFile(file, []byte("CONFIG_FOO=y\n"), 0o644)
	cases := []struct {
		hypervisor string // "": Select, else SelectFor
		args       []string
		defaults   bool
		base       string
		want       string
	}{
		{"", nil, true, "defconfig", "qemu-x86_64 agent natt-esp"},
		{"", nil, true, "tinyconfig", "qemu-x86_64 agent natt-esp lean"},
		{"", []string{"debug"}, true, "allnoconfig", "qemu-x86_64 agent natt-esp lean debug"},
		{"", []string{"xen-guest", "defaults"}, false, "tinyconfig", "xen-guest qemu-x86_64 agent natt-esp"},
		{"", []string{file}, false, "", file},
		{"", nil, false, "tinyconfig", ""},
		{"qemu", []string{"debug"}, true, "tinyconfig", "qemu-x86_64 agent natt-esp lean debug"},
		{"xen", []string{"debug"}, true, "tinyconfig", "qemu-x86_64 agent natt-esp lean xen-guest debug"},
		{"xen", nil, true, "defconfig", "qemu-x86_64 agent natt-esp xen-guest"},
		{"xen", []string{file}, false, "", file},
	}
	for _, c := range cases {
		frags, err := Select(c.args, c.defaults, c.base)
		if c.hypervisor != "" {
			frags, err = SelectFor(c.hypervisor, c.args, c.defaults, c.base)
		}
		if err != nil {
			t.Errorf("Select(%v, %v, %s): %v", c.args, c.defaults, c.base, err)
			continue
		}
		var names []string
		for _, f := range frags {
			names = append(names, f.Name)
		}
		if got := strings.Join(names, " "); got != c.want {
			t.Errorf("Select(%v, %v, %s) = %q, want %q", c.args, c.defaults, c.base, got, c.want)
		}
	}
	if _, err := Select([]string{"no-such-fragment"}, true, ""); err == nil {
		t.Error("Select with an unknown fragment: no error")
	}
}

func TestForGates(t *testing.T) {
	frags := Defaults()
	for _, tc := range []struct {
		v           Version
		kept, gated []string
	}{
		{v: V(6, 1, 0), kept: []string{"PVH", "VIRTIO_MENU", "CRYPTO_ECHAINIV", "TTY", "MULTIUSER"},
			gated: []string{"INET_XFRM_MODE_TRANSPORT", "EXPERIMENTAL", "VIRTUALIZATION", "PARAVIRT_GUEST", "ACPI", "PM"}},
		{v: V(3, 14, 5), kept: []string{"INET_XFRM_MODE_TRANSPORT", "TTY", "HYPERVISOR_GUEST", "CRYPTO_SHA256_SSSE3", "ACPI", "BINFMT_SCRIPT", "NET_CORE"},
			gated: []string{"PVH", "PVPANIC", "VIRTIO_MENU", "CRYPTO_ECHAINIV", "MULTIUSER", "POSIX_TIMERS", "EXPERIMENTAL", "PARAVIRT_GUEST", "PM"}},
		// 2.6.32.2 as checked on the real tree (TestGatesOnTrees).
		{v: V(2, 6, 32), kept: []string{"EXPERIMENTAL", "VIRTUALIZATION", "DEVTMPFS", "INET_XFRM_MODE_TRANSPORT", "PARAVIRT_GUEST", "PM", "ACPI"},
			gated: []string{"TTY", "HYPERVISOR_GUEST", "CRYPTO_GHASH_CLMUL_NI_INTEL", "CRYPTO_SHA1_SSSE3", "BINFMT_SCRIPT", "NET_CORE",
				"CRYPTO_MANAGER_DISABLE_TESTS"}},
	} {
		keep, dropped := For(tc.v, frags...)
		in := func(list []Setting, sym string) bool {
			for _, s := range list {
				if s.Symbol == sym {
					return true
				}
			}
			return false
		}
		for _, s := range tc.kept {
			if !in(keep, s) || in(dropped, s) {
				t.Errorf("%v: %s should be kept", tc.v, s)
			}
		}
		for _, s := range tc.gated {
			if in(keep, s) || !in(dropped, s) {
				t.Errorf("%v: %s should be gated out", tc.v, s)
			}
		}
	}
	keep, _ := For(V(6, 1, 0), Defaults()...)
	for _, s := range keep {
		if s.Symbol == "CRYPTO_SHA1_SSSE3" && !s.Optional {
			t.Error("speed-only SHA1_SSSE3 must be optional")
		}
		if s.Symbol == "XFRM_USER" && s.Optional {
			t.Error("XFRM_USER must be required")
		}
	}
}

func TestExpr(t *testing.T) {
	cfg, _ := ParseConfig([]byte("CONFIG_A=y\nCONFIG_M=m\nCONFIG_S=\"abc\"\nCONFIG_N=4\n"))
	for _, tc := range []struct {
		e    string
		want int
		str  string
	}{
		{"A", 2, "A"},
		{"B", 0, "B"},
		{"M", 1, "M"},
		{"A && M", 1, "A && M"},
		{"A && (B || M)", 1, "A && (B || M)"},
		{"!B && A", 2, "!B && A"},
		{"!(A || B)", 0, "!(A || B)"},
		{"M=m", 2, "M=m"},
		{"A!=y", 0, "A!=y"},
		{`S="abc"`, 2, `S="abc"`},
		{"N>=4 && N<5", 2, "N>=4 && N<5"},
		{"y", 2, "y"},
		{"B || n", 0, "B || n"},
	} {
		e, err := ParseExpr(tc.e)
		if err != nil {
			t.Errorf("ParseExpr(%q): %v", tc.e, err)
			continue
		}
		if got := e.Eval(cfg); got != tc.want {
			t.Errorf("%q = %d, want %d", tc.e, got, tc.want)
		}
		if e.String() != tc.str {
			t.Errorf("String(%q) = %q", tc.e, e.String())
		}
	}
	for _, bad := range []string{"", "A &&", "(A", "A B", "=y", `"open`} {
		if _, err := ParseExpr(bad); err == nil {
			t.Errorf("ParseExpr(%q) accepted", bad)
		}
	}
	e, _ := ParseExpr("A && (B || C) && !D")
	if n := len(Conjuncts(e)); n != 3 {
		t.Errorf("Conjuncts: %d, want 3", n)
	}
}

// writeTree writes files into a temporary directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestExplain(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"Kconfig": `mainmenu "Test"
source "arch/$(SRCARCH)/Kconfig"
source "net/Kconfig"
source "drivers/Kconfig"
`,
		"arch/x86/Kconfig": `config X86
	def_bool y
	select HAVE_PCI

config HAVE_PCI
	bool

menuconfig PCI
	bool "PCI support"
	depends on HAVE_PCI
	help
	  Help text that mentions
	  config NOT_A_SYMBOL
	  and depends on NOTHING.

choice
	prompt "Compression"
config KERNEL_GZIP
	bool "gzip"
config KERNEL_XZ
	bool "xz"
endchoice
`,
		"net/Kconfig": `menuconfig NET
	bool "Networking support"

if NET
config INET
	bool "TCP/IP"

config XFRM
	bool
	depends on INET

config XFRM_USER
	tristate "Transformation user configuration interface"
	depends on INET
	select XFRM
endif
`,
		"drivers/Kconfig": `menu "Device drivers"
	depends on !BROKEN_DRIVERS

config VIRTIO_NET
	tristate "Virtio network driver"
	depends on PCI && \
		   NET
	---help---
	  Old style help.

config PVPANIC_PCI
	tristate "pvpanic PCI device support" if EXPERT
	depends on PCI
endmenu
`,
	})
	k, err := ReadKconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Defined("NOT_A_SYMBOL") || k.Defined("NOTHING") {
		t.Error("help text parsed as entries")
	}
	if !k.Defined("VIRTIO_NET") || !k.Defined("KERNEL_XZ") || !k.Defined("XFRM") {
		t.Fatalf("missing definitions: %v", k.Syms)
	}
	if d := k.Syms["XFRM_USER"].Defs[0]; len(d.Deps) != 2 || d.Deps[0].String() != "NET" {
		t.Errorf("XFRM_USER deps = %v, want NET (from if) and INET", d.Deps)
	}
	if d := k.Syms["VIRTIO_NET"].Defs[0]; len(d.Deps) != 2 || d.Deps[1].String() != "PCI && NET" {
		t.Errorf("VIRTIO_NET deps = %v, want !BROKEN_DRIVERS (menu) and PCI && NET (continued line)", d.Deps)
	}

	final, _ := ParseConfig([]byte("CONFIG_X86=y\nCONFIG_HAVE_PCI=y\n# CONFIG_PCI is not set\nCONFIG_NET=y\n# CONFIG_INET is not set\nCONFIG_KERNEL_GZIP=y\n"))
	wanted := []Setting{
		{Symbol: "VIRTIO_NET", Value: "y", Source: "qemu"},
		{Symbol: "XFRM", Value: "y", Source: "natt"},
		{Symbol: "XFRM_USER", Value: "y", Source: "natt"},
		{Symbol: "KERNEL_XZ", Value: "y", Source: "user"},
		{Symbol: "INET_XFRM_MODE_TRANSPORT", Value: "y", Source: "natt", Optional: true},
		{Symbol: "NET", Value: "y", Source: "natt"},
		{Symbol: "PCI", Value: "n", Source: "user"},
		{Symbol: "HAVE_PCI", Value: "n", Source: "user"},
	}
	probs, err := Check(dir, nil, final, wanted)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"VIRTIO_NET":               {"unmet dependency depends on PCI && NET [PCI=n NET=y] (drivers/Kconfig:4)"},
		"XFRM":                     {"has no prompt", "XFRM_USER=n"},
		"XFRM_USER":                {"unmet dependency depends on INET [INET=n]"},
		"KERNEL_XZ":                {"choice"},
		"INET_XFRM_MODE_TRANSPORT": {"does not exist in this version"},
		"HAVE_PCI":                 {"selected by X86"},
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(probs), len(want), probs)
	}
	for _, p := range probs {
		for _, frag := range want[p.Symbol] {
			if !strings.Contains(p.Reason, frag) {
				t.Errorf("%s: reason %q lacks %q", p.Symbol, p.Reason, frag)
			}
		}
		if p.Symbol == "INET_XFRM_MODE_TRANSPORT" && !p.Missing {
			t.Error("missing symbol not flagged Missing")
		}
	}
	if f := Failed(probs); len(f) != len(probs)-1 {
		t.Errorf("Failed kept %d of %d (one is optional)", len(f), len(probs))
	}

	// A prompt hidden by its condition.
	final2, _ := ParseConfig([]byte("CONFIG_PCI=y\nCONFIG_HAVE_PCI=y\n"))
	probs, _ = Check(dir, k, final2, []Setting{{Symbol: "PVPANIC_PCI", Value: "y"}})
	if len(probs) != 1 || !strings.Contains(probs[0].Reason, "prompt only if EXPERT [EXPERT=n]") {
		t.Errorf("hidden prompt: %v", probs)
	}
}

func TestReadKconfigOldRoot(t *testing.T) {
	// Trees before 4.x have no top Kconfig: arch/x86/Kconfig is the root
	// and sources use $SRCARCH without parentheses.
	dir := writeTree(t, map[string]string{
		"arch/x86/Kconfig":       "config 64BIT\n\tbool \"64-bit kernel\" if ARCH = \"x86\"\n\tdefault ARCH = \"x86_64\"\nsource \"init/Kconfig\"\nsource \"arch/$SRCARCH/Kconfig.debug\"\n",
		"init/Kconfig":           "config EXPERIMENTAL\n\tbool \"Prompt for development drivers\"\n",
		"arch/x86/Kconfig.debug": "config EARLY_PRINTK\n\tbool \"Early printk\" if EMBEDDED\n\tdefault y\n",
	})
	k, err := ReadKconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"64BIT", "EXPERIMENTAL", "EARLY_PRINTK"} {
		if !k.Defined(s) {
			t.Errorf("%s not found", s)
		}
	}
}

// TestReadKconfigEmptyHelp: an empty help text (3.14's drivers/video/Kconfig
// has "help" followed by a blank line and the next config) must not swallow
// the rest of the file: VGA_CONSOLE, sourced after it, was reported as
// missing in 3.14.
func TestReadKconfigEmptyHelp(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"Kconfig":         "config FB_I810_I2C\n\tbool \"Enable DDC Support\"\n\thelp\n\nconfig FB_LE80578\n\ttristate \"Intel LE80578\"\n\thelp\n\t  This driver supports the LE80578\n\t  chipset.\n\n\t  More text.\nif VT\n\tsource \"console/Kconfig\"\nendif\n",
		"console/Kconfig": "menu \"Console display driver support\"\nconfig VGA_CONSOLE\n\tbool \"VGA text console\" if EXPERT || !X86\n\thelp\n\t  Saying Y here.\nendmenu\n",
	})
	k, err := ReadKconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"FB_I810_I2C", "FB_LE80578", "VGA_CONSOLE"} {
		if !k.Defined(s) {
			t.Errorf("%s not found", s)
		}
	}
}
