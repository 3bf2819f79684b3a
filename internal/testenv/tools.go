package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/linuxsrc"
)

// Missing skips t for a missing piece of the machine (what says which, and
// how to install it), or fails it under KBISECT_REQUIRE_VM. Every test that
// cannot run for lack of a tool, a kernel or a privilege goes through it,
// so that `make test` cannot pass by skipping.
func Missing(t testing.TB, what string) {
	t.Helper()
	missing(t, what)
}

// NeedCommand skips (or fails) t without the program name on PATH (or in
// /usr/sbin, /sbin for root's tools), and returns its path; pkg is the
// Debian package that has it.
func NeedCommand(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	missing(t, name+" not installed: apt-get install "+pkg)
	return ""
}

// NeedTshark skips (or fails) t without tshark, and returns its path.
func NeedTshark(t testing.TB) string {
	t.Helper()
	return NeedCommand(t, "tshark", "tshark")
}

// NeedNft skips (or fails) t without root and nft (the NAT topology).
func NeedNft(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	return NeedCommand(t, "nft", "nftables")
}

// NeedLinuxSource skips (or fails) t without Debian's linux-source-6.1
// tarball, which the tests that build Linux 6.1 import.
func NeedLinuxSource(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(linuxsrc.Tarball); err != nil {
		missing(t, linuxsrc.Tarball+" not installed: apt-get install linux-source-6.1")
	}
}

// DebianModules returns the newest Debian kernel in /boot whose modules are
// installed (a modules.dep), and that modules directory; version, if not
// empty, narrows the search to that release series ("6.1.0").
func DebianModules(t testing.TB, version string) (kernel, modules string) {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-" + version + "*-amd64")
	sort.Strings(ks)
	for i := len(ks) - 1; i >= 0; i-- {
		rel := strings.TrimPrefix(filepath.Base(ks[i]), "vmlinuz-")
		md := filepath.Join("/lib/modules", rel)
		if _, err := os.Stat(filepath.Join(md, "modules.dep")); err == nil {
			return ks[i], md
		}
	}
	missing(t, "no Debian "+version+" kernel with its modules in /boot and /lib/modules: apt-get install linux-image-amd64")
	return "", ""
}

// WriteScript writes an executable shell script with body into dir and
// returns its path.
func WriteScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
