// Package testenv finds what kbisect's tests need on the machine (QEMU,
// Debian's kernel, root) and skips a test that cannot run, unless
// KBISECT_REQUIRE_VM is set (as `make test` does): then a missing piece
// fails the test, so CI cannot pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// missing skips or fails t for a missing requirement.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("KBISECT_REQUIRE_VM") != "" {
		t.Fatalf("%s (KBISECT_REQUIRE_VM is set: run `make setup`)", what)
	}
	t.Skip(what)
}

// NeedQEMU skips (or fails) t without qemu-system-x86_64.
func NeedQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing(t, "qemu-system-x86_64 not installed: apt-get install qemu-system-x86")
	}
}

// NeedRoot skips (or fails) t when not running as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (network namespaces, taps)")
	}
}

// DebianKernel returns the newest Debian kernel in /boot and its modules
// directory ($KBISECT_TEST_KERNEL overrides the kernel).
func DebianKernel(t testing.TB) (kernel, modules string) {
	t.Helper()
	NeedQEMU(t)
	if k := os.Getenv("KBISECT_TEST_KERNEL"); k != "" {
		return k, ""
	}
	ks, _ := filepath.Glob("/boot/vmlinuz-*-amd64")
	if len(ks) == 0 {
		missing(t, "no /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64")
	}
	sort.Strings(ks)
	k := ks[len(ks)-1]
	rel := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
	return k, filepath.Join("/lib/modules", rel)
}

// SourceDir returns the kbisect module root (for building the agent).
func SourceDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatalf("no go.mod above %s", dir)
	return ""
}
