package testenv

import (
	"os"
	"testing"
)

// NeedXen skips (or fails) t without Debian's Xen 4.17 hypervisor and
// toolstack, which the nested Xen host is built from.
func NeedXen(t testing.TB) {
	t.Helper()
	NeedQEMU(t)
	for _, p := range []string{"/boot/xen-4.17-amd64.gz", "/usr/lib/xen-4.17/bin/xl", "/usr/bin/xenstore-write"} {
		if _, err := os.Stat(p); err != nil {
			missing(t, p+" missing: apt-get install xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils")
		}
	}
}
