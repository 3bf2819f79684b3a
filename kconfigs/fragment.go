package kconfigs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

//go:embed fragments/*.config
var embedded embed.FS

// Setting is one symbol value a fragment asks for.
type Setting struct {
	Symbol string // without CONFIG_
	Value  string // "y", "m", "n", a number or a quoted string
	// Source names the fragment the setting comes from.
	Source string
	// Optional settings are wanted but not required: Check reports them as
	// warnings, not failures (speed-ups such as the SIMD crypto drivers).
	Optional bool
	// ModuleOK says a module serves as well as built-in code ("y"): the
	// guest agent loads it (see Loadable), so a config that has it as "m"
	// keeps it so, and "m" passes the check.
	ModuleOK bool
}

// String renders the setting in .config syntax.
func (s Setting) String() string {
	if s.Value == "n" {
		return "# CONFIG_" + s.Symbol + " is not set"
	}
	return "CONFIG_" + s.Symbol + "=" + s.Value
}

// Fragment is a named list of settings, in merge_config.sh's format (a
// .config excerpt).
type Fragment struct {
	Name     string
	Settings []Setting
	data     []byte
}

// OptionalMarker is a line that makes every setting of a fragment optional:
// wanted, but a kernel without it is still usable.
const OptionalMarker = "# kbisect: optional"

// ParseFragment parses fragment text; name is used in messages and in
// Setting.Source.
func ParseFragment(name string, data []byte) (*Fragment, error) {
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("fragment %s: %w", name, err)
	}
	f := &Fragment{Name: name, data: data}
	optional := bytes.Contains(data, []byte("\n"+OptionalMarker+"\n")) || bytes.HasPrefix(data, []byte(OptionalMarker+"\n"))
	for _, s := range c.order {
		f.Settings = append(f.Settings, Setting{Symbol: s, Value: c.vals[s], Source: name, Optional: optional})
	}
	return f, nil
}

// LoadFragment reads a fragment file.
func LoadFragment(file string) (*Fragment, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config fragment %s: %w", file, err)
	}
	return ParseFragment(file, data)
}

// Builtin returns the embedded fragment called name (see BuiltinNames).
func Builtin(name string) (*Fragment, error) {
	data, err := embedded.ReadFile("fragments/" + name + ".config")
	if err != nil {
		return nil, fmt.Errorf("no built-in config fragment %q (have: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	return ParseFragment(name, data)
}

// BuiltinNames lists the embedded fragments: qemu-x86_64 (booting under
// QEMU), agent (the Go guest agent), natt-esp (the NAT-T ESP testcase),
// xen-guest and debug.
func BuiltinNames() []string {
	ents, _ := fs.ReadDir(embedded, "fragments")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".config"))
	}
	sort.Strings(names)
	return names
}

// DefaultNames are the fragments a kbisect run needs: a QEMU guest that
// runs the agent and the natt-esp testcase.
var DefaultNames = []string{"qemu-x86_64", "agent", "natt-esp"}

// Resolve returns the built-in fragment called arg, or else loads the file
// arg.
func Resolve(arg string) (*Fragment, error) {
	if !strings.ContainsRune(arg, '/') && !strings.HasSuffix(arg, ".config") {
		return Builtin(arg)
	}
	return LoadFragment(arg)
}

// Select returns the fragments for a build: with defaults, DefaultNames
// (plus "lean" when base is tinyconfig or allnoconfig, whose kernels need
// nothing else), then each of args in order; an arg "defaults" stands for
// the DefaultNames fragments, any other arg is resolved by Resolve.
func Select(args []string, defaults bool, base string) ([]*Fragment, error) {
	var names []string
	if defaults {
		names = append(names, DefaultNames...)
		if base == "tinyconfig" || base == "allnoconfig" {
			names = append(names, "lean")
		}
	}
	var out []*Fragment
	for _, n := range append(names, args...) {
		if n == "defaults" {
			out = append(out, Defaults()...)
			continue
		}
		f, err := Resolve(n)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// SelectFor is Select for a kernel that hypervisor boots: under "xen"
// the kernel is a Xen guest too, and with defaults the xen-guest fragment
// joins them, before args.
func SelectFor(hypervisor string, args []string, defaults bool, base string) ([]*Fragment, error) {
	if defaults && hypervisor == "xen" {
		args = append([]string{"xen-guest"}, args...)
	}
	return Select(args, defaults, base)
}

// Defaults returns the DefaultNames fragments.
func Defaults() []*Fragment {
	var out []*Fragment
	for _, n := range DefaultNames {
		f, err := Builtin(n)
		if err != nil {
			panic(err) // embedded at build time
		}
		out = append(out, f)
	}
	return out
}

// Hash identifies the fragment's contents (for build cache keys).
func (f *Fragment) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", path.Base(f.Name))
	if f.data != nil {
		h.Write(f.data)
	} else {
		for _, s := range f.Settings {
			fmt.Fprintf(h, "%s\n", s)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Gate says in which kernel versions a fragment symbol applies. Symbols
// appear, disappear and change meaning over the years; gating keeps one
// fragment valid for every version: outside its range a setting is dropped
// (and reported) instead of failing the check.
type Gate struct {
	Symbol   string
	Versions Range
	// Optional marks a symbol that is wanted for speed or comfort but
	// whose absence does not make the kernel unfit for kbisect.
	Optional bool
	// Why says what the symbol is and why it is gated (for reports).
	Why string
}

// Gates is the table of version-gated fragment symbols. Versions are the
// first release that has (From) or no longer has (Until) the symbol, or the
// first where it is no longer needed. Entries for 2.6.32..3.14 are refined
// by issue #8 on real trees; a symbol that is missing from a tree and not
// gated here is reported by Check as "does not exist in this version".
var Gates = []Gate{
	// qemu-x86_64
	{Symbol: "TTY", Versions: Range{From: V(3, 9, 0)}, Why: "TTY became optional in 3.9; before, always built in"},
	{Symbol: "EXPERIMENTAL", Versions: Range{Until: V(3, 9, 0)}, Why: "removed in 3.9; before, virtio and others depend on it"},
	{Symbol: "VIRTUALIZATION", Versions: Range{Until: V(3, 1, 0)}, Why: "virtio sat under the Virtualization menu until 3.1 (the ladder: 3.0.0 sources drivers/virtio/Kconfig from arch/x86/kvm/Kconfig, 3.1.0 from drivers/Kconfig; 3.0.0 did not configure with the 3.0 this table said)"},
	{Symbol: "VIRTIO_MENU", Versions: Range{From: V(4, 16, 0)}, Why: "the virtio drivers menu became a symbol in 4.16, default y but off in a tinyconfig (the ladder: absent in 4.14.5, present in 4.19.78; 4.19 and 5.4 did not configure with the 5.8 this table said)"},
	{Symbol: "HYPERVISOR_GUEST", Versions: Range{From: V(3, 10, 0)}, Why: "added in 3.10 (PARAVIRT_GUEST before)"},
	{Symbol: "PARAVIRT_GUEST", Versions: Range{Until: V(3, 10, 0)}, Why: "the paravirtualized guest menu before 3.10 (HYPERVISOR_GUEST since): PARAVIRT and the Xen guest depend on it (present in 2.6.32, removed in 3.10)"},
	{Symbol: "PM", Versions: Range{Until: V(3, 1, 0)}, Optional: true, Why: "2.6.32's ACPI depends on PM (a prompt then; by 3.14 a def_bool of PM_SLEEP || PM_RUNTIME, and ACPI no longer depends on it)"},
	{Symbol: "ACPI", Versions: Range{Until: V(4, 19, 0)}, Why: "needed before 4.19 (no tsc_early_khz): the HPET and PM timer references make TSC calibration reliable under a loaded TCG host; 2.6.32 without them hung in \"Calibrating delay loop...\""},
	{Symbol: "PVH", Versions: Range{From: V(4, 20, 0)}, Optional: true, Why: "PVH entry for direct vmlinux boot, 4.20"},
	{Symbol: "PVPANIC", Versions: Range{From: V(5, 12, 0)}, Optional: true, Why: "pvpanic-pci driver, 5.12 (the ACPI-only driver before needs ACPI)"},
	{Symbol: "PVPANIC_PCI", Versions: Range{From: V(5, 12, 0)}, Optional: true, Why: "pvpanic-pci driver, 5.12"},
	{Symbol: "EARLY_PRINTK", Optional: true, Why: "early console, for debugging early boot"},
	{Symbol: "BINFMT_SCRIPT", Versions: Range{From: V(3, 10, 0)}, Why: "#! scripts became optional in 3.10; before, always built in"},
	{Symbol: "NET_CORE", Versions: Range{From: V(3, 2, 0)}, Why: "the \"Network core driver support\" menu symbol came with the drivers/net reorganisation (the ladder: absent in 3.1.0, present in 3.2.4)"},
	{Symbol: "DEVTMPFS", Versions: Range{From: V(2, 6, 32)}, Why: "added in 2.6.32"},
	{Symbol: "DEVTMPFS_MOUNT", Versions: Range{From: V(2, 6, 32)}, Why: "added in 2.6.32"},
	// agent
	{Symbol: "MULTIUSER", Versions: Range{From: V(4, 1, 0)}, Why: "optional since 4.1; before, always built in"},
	{Symbol: "POSIX_TIMERS", Versions: Range{From: V(4, 10, 0)}, Why: "optional since 4.10"},
	{Symbol: "ADVISE_SYSCALLS", Versions: Range{From: V(3, 18, 0)}, Why: "optional since 3.18"},
	{Symbol: "FILE_LOCKING", Versions: Range{From: V(2, 6, 25)}, Why: "optional since 2.6.25"},
	// natt-esp
	{Symbol: "INET_XFRM_MODE_TRANSPORT", Versions: Range{Until: V(5, 2, 0)}, Why: "transport mode was a separate module until 5.2"},
	{Symbol: "CRYPTO_ECHAINIV", Versions: Range{From: V(4, 2, 0)}, Why: "added in 4.2 (ESP used seqiv/eseqiv before)"},
	{Symbol: "CRYPTO_GHASH", Versions: Range{From: V(2, 6, 32)}, Why: "added in 2.6.32"},
	{Symbol: "CRYPTO_MANAGER_DISABLE_TESTS", Versions: Range{From: V(2, 6, 36)}, Optional: true, Why: "skips boot-time crypto self-tests (slow under TCG); the ladder: absent in 2.6.35, present in 2.6.36"},
	{Symbol: "CRYPTO_AES_NI_INTEL", Optional: true, Why: "speed only"},
	{Symbol: "CRYPTO_SHA1_SSSE3", Versions: Range{From: V(3, 2, 0)}, Optional: true, Why: "speed only; added in 3.2 (the ladder: absent in 3.1.0, present in 3.2.4)"},
	{Symbol: "CRYPTO_SHA256_SSSE3", Versions: Range{From: V(3, 10, 99)}, Optional: true, Why: "speed only; added in 3.11, and in the 3.10.y stable releases by 3.10.99 (the ladder: absent in 3.9.6, present in 3.10.99 and 3.11.0)"},
	{Symbol: "CRYPTO_GHASH_CLMUL_NI_INTEL", Versions: Range{From: V(2, 6, 33)}, Optional: true, Why: "speed only; added in 2.6.33"},
	// xen-guest
	{Symbol: "XEN_PV", Versions: Range{From: V(4, 14, 0)}, Why: "PV guest support became a symbol in 4.14"},
	{Symbol: "XEN_PVHVM", Versions: Range{From: V(2, 6, 36)}, Optional: true, Why: "PV-on-HVM drivers, 2.6.36 (absent in 2.6.32, present in 3.14); a PV or PVH domU does not need them, and they depend on PCI"},
	{Symbol: "XEN_DOM0", Versions: Range{From: V(2, 6, 37)}, Optional: true, Why: "dom0 support, 2.6.37 (absent in 2.6.32, present in 3.14); a domU does not need it, and it depends on PCI_XEN"},
	{Symbol: "XEN_PVH", Versions: Range{From: V(3, 14, 0)}, Optional: true, Why: "PVH guests, 3.14 (reworked in 4.11); it depends on ACPI, which this table adds only before 4.19, so a tinyconfig kernel from 4.19 on is PV only unless your config has ACPI (kbisect refuses --xen-guest pvh for a kernel without the PVH note)"},
	{Symbol: "HVC_XEN_FRONTEND", Versions: Range{From: V(3, 4, 0)}, Why: "added in 3.4 (the ladder: absent in 3.3.6, present in 3.4.2)"},
	// debug
	{Symbol: "PANIC_ON_OOPS", Versions: Range{From: V(3, 5, 0)}, Optional: true, Why: "panic_on_oops as a config symbol, 3.5 (absent in 2.6.32, present in 3.14); boot with oops=panic before"},
	{Symbol: "MAGIC_SYSRQ_SERIAL", Versions: Range{From: V(4, 11, 0)}, Optional: true, Why: "added in 4.11 (the ladder: absent in 4.9.0, present in 4.14.5)"},
	// lean
	{Symbol: "SECTION_MISMATCH_WARN_ONLY", Versions: Range{Until: V(6, 0, 0)}, Optional: true, Why: "gcc 12's section mismatches stop old releases' modpost (the ladder: 4.14.5 from tinyconfig); the symbol came between 4.1.6 and 4.4.121 and is dropped where absent; 6.1 builds without it, and its configs stay as they were"},
}

// Loadable are the fragment symbols whose code the guest agent loads as
// modules when the kernel is modular (testcases' module lists: the ESP and
// crypto modules, virtio-net, xen-netfront): a user's config that builds
// them as modules is kept that way, as a distribution kernel would be.
var Loadable = map[string]bool{
	"XFRM_USER": true, "INET_ESP": true, "INET_XFRM_MODE_TRANSPORT": true,
	"CRYPTO_AES": true, "CRYPTO_CBC": true, "CRYPTO_ECB": true, "CRYPTO_CTR": true, "CRYPTO_GCM": true,
	"CRYPTO_GHASH": true, "CRYPTO_SEQIV": true, "CRYPTO_ECHAINIV": true, "CRYPTO_AUTHENC": true,
	"CRYPTO_NULL": true, "CRYPTO_HMAC": true, "CRYPTO_SHA1": true, "CRYPTO_SHA256": true,
	"CRYPTO_AES_NI_INTEL": true, "CRYPTO_SHA1_SSSE3": true, "CRYPTO_SHA256_SSSE3": true,
	"CRYPTO_GHASH_CLMUL_NI_INTEL": true,
	"VIRTIO_PCI":                  true, "VIRTIO_NET": true,
	"XEN_NETDEV_FRONTEND": true,
}

// GateFor returns the gate of sym, if the table has one.
func GateFor(sym string) (Gate, bool) {
	for _, g := range Gates {
		if g.Symbol == sym {
			return g, true
		}
	}
	return Gate{}, false
}

// For returns the settings of fragments that apply to kernel version v
// (the last fragment to set a symbol wins, as in merge_config.sh), with
// Optional set from the gate table, and the settings dropped because their
// gate excludes v. A zero v keeps everything.
func For(v Version, frags ...*Fragment) (keep, dropped []Setting) {
	idx := map[string]int{}
	var all []Setting
	for _, f := range frags {
		for _, s := range f.Settings {
			if g, ok := GateFor(s.Symbol); ok {
				s.Optional = s.Optional || g.Optional
			}
			s.ModuleOK = s.ModuleOK || Loadable[s.Symbol]
			if i, ok := idx[s.Symbol]; ok {
				all[i] = s
				continue
			}
			idx[s.Symbol] = len(all)
			all = append(all, s)
		}
	}
	for _, s := range all {
		if g, ok := GateFor(s.Symbol); ok && !v.IsZero() && !g.Versions.Contains(v) {
			dropped = append(dropped, s)
			continue
		}
		keep = append(keep, s)
	}
	return keep, dropped
}
