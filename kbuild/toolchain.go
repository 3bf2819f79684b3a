package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/kbisect/kbisect/kconfigs"
)

// ToolchainRule adds compiler flags or make variables for a version range.
type ToolchainRule struct {
	Versions kconfigs.Range
	// CC replaces the compiler (e.g. "gcc-11") unless the user chose one.
	CC string
	// CFlags are appended to CC (so that every compile, including
	// Kbuild's cc-option probes, sees them).
	CFlags []string
	// HostCFlags are appended to HOSTCC.
	HostCFlags []string
	// MakeVars are extra make variables ("NAME=value").
	MakeVars []string
	// Why says what breaks without the rule and which upstream change
	// made it unnecessary.
	Why string
}

// Toolchains is the version -> toolchain table: the compiler flags old
// trees need on Debian 12's gcc 12 (see also Fixups).
var Toolchains = []ToolchainRule{
	{
		MakeVars: []string{"ARCH=x86_64", "CROSS_COMPILE="},
		Why:      "kbisect builds x86_64 kernels natively; some trees default ARCH and CROSS_COMPILE to another architecture",
	},
	{
		Versions: kconfigs.Range{Until: kconfigs.V(4, 9, 0)},
		CFlags:   []string{"-fno-pie", "-no-pie"},
		Why:      "gcc builds PIE by default: \"code model kernel does not support PIC mode\" and every cc-option probe fails; upstream 8ae94224c9d7 (kbuild: add -fno-PIE, v4.9)",
	},
	{
		Versions: kconfigs.Range{Until: kconfigs.V(3, 18, 0)},
		CFlags:   []string{"-std=gnu89"},
		Why:      "gcc >= 5 defaults to gnu11: extern inline helpers become multiple definitions; upstream 51b97e354ba9 (kernel: use the gnu89 standard explicitly, v3.18)",
	},
	{
		Versions:   kconfigs.Range{Until: kconfigs.V(5, 7, 0)},
		HostCFlags: []string{"-fcommon"},
		Why:        "gcc >= 10 defaults to -fno-common: host tools such as arch/x86/tools/relocs fail to link (\"multiple definition of per_cpu_load_addr\"); upstream fixed the tools one by one up to about v5.7",
	},
}

// Toolchain is the compiler setup for one build.
type Toolchain struct {
	// CC is the compiler command without flags, e.g. "gcc" or "gcc-12".
	CC string
	// HostCC is the host compiler command, "gcc" unless CC is a
	// versioned gcc (then the same one).
	HostCC                       string
	CFlags, HostCFlags, MakeVars []string
	// Version is the first line of `CC --version`.
	Version string
	// GCCMajor is the compiler's major version (0 if unknown).
	GCCMajor int
	// Ccache, if set, prefixes compiles with ccache.
	Ccache bool
}

// ToolchainFor applies the table to kernel version v. cc overrides the
// compiler ("" keeps the table's, "gcc" by default). It runs the compiler
// once to learn its version.
func ToolchainFor(ctx context.Context, table []ToolchainRule, v kconfigs.Version, cc string) (*Toolchain, error) {
	tc := &Toolchain{CC: "gcc"}
	for _, r := range table {
		if !r.Versions.Contains(v) {
			continue
		}
		if r.CC != "" {
			tc.CC = r.CC
		}
		tc.CFlags = append(tc.CFlags, r.CFlags...)
		tc.HostCFlags = append(tc.HostCFlags, r.HostCFlags...)
		tc.MakeVars = append(tc.MakeVars, r.MakeVars...)
	}
	if cc != "" {
		tc.CC = cc
	}
	tc.HostCC = "gcc"
	if strings.HasPrefix(tc.CC, "gcc-") {
		tc.HostCC = tc.CC
	}
	out, err := exec.CommandContext(ctx, tc.CC, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("compiler %q does not run (%v): install it or choose another with --cc", tc.CC, err)
	}
	tc.Version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	tc.GCCMajor = gccMajor(tc.Version)
	return tc, nil
}

var gccVersion = regexp.MustCompile(`\) (\d+)\.\d+`)

func gccMajor(version string) int {
	if !strings.Contains(version, "gcc") && !strings.Contains(version, "GCC") {
		return 0
	}
	m := gccVersion.FindStringSubmatch(version)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Vars returns the make variables for the toolchain: CC and HOSTCC with
// their flags (and ccache), plus the table's variables.
func (tc *Toolchain) Vars() []string {
	cc := append([]string{tc.CC}, tc.CFlags...)
	hostcc := append([]string{tc.HostCC}, tc.HostCFlags...)
	if tc.Ccache {
		cc = append([]string{"ccache"}, cc...)
		hostcc = append([]string{"ccache"}, hostcc...)
	}
	vars := append([]string(nil), tc.MakeVars...)
	return append(vars, "CC="+strings.Join(cc, " "), "HOSTCC="+strings.Join(hostcc, " "))
}

// ID identifies the toolchain for cache keys: compiler version, flags and
// variables, binutils version (ccache is not part of it: it does not change
// the output).
func (tc *Toolchain) ID(ctx context.Context) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%q\n%q\n%q\n", tc.CC, tc.HostCC, tc.Version, tc.CFlags, tc.HostCFlags, tc.MakeVars)
	if out, err := exec.CommandContext(ctx, "ld", "--version").Output(); err == nil {
		h.Write([]byte(strings.SplitN(string(out), "\n", 2)[0]))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// String describes the toolchain on one line.
func (tc *Toolchain) String() string {
	s := tc.Version
	if len(tc.CFlags) > 0 {
		s += " CFLAGS " + strings.Join(tc.CFlags, " ")
	}
	if len(tc.HostCFlags) > 0 {
		s += " HOSTCFLAGS " + strings.Join(tc.HostCFlags, " ")
	}
	return s
}
