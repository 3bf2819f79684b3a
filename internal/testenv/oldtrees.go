package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kbisect/kbisect/internal/linuxsrc"
)

// Old kernel source tarballs for tests (see OldTree).
const (
	Tarball3_14 = "linux-3.14.5-x86.tar.xz"
	Tarball2_6  = "linux-2.6.32-x86.tar.xz"
)

// OldKernelsDir returns the directory of the old kernel source tarballs:
// $KBISECT_OLD_KERNELS, or the first shared/kernels directory found beside
// or above the kbisect source tree (a checkout's ../shared/kernels).
func OldKernelsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("KBISECT_OLD_KERNELS"); d != "" {
		return d
	}
	root := SourceDir(t)
	for d := root; ; d = filepath.Dir(d) {
		for _, c := range []string{filepath.Join(d, "shared", "kernels"), filepath.Join(d, "..", "shared", "kernels")} {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return filepath.Clean(c)
			}
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	missing(t, "no old kernel tarballs: set KBISECT_OLD_KERNELS to the directory holding "+Tarball3_14+" and "+Tarball2_6+" (the project's shared/kernels)")
	return ""
}

// OldTree returns a git repository (bare) holding the kernel tree of the
// tarball named (Tarball3_14 or Tarball2_6) as one commit, and that
// commit: made once from the tarball by fast-import and cached, like the
// 6.1 tree of Debian's linux-source. A missing tarball fails the test
// under KBISECT_REQUIRE_VM, as a missing QEMU does.
func OldTree(t testing.TB, tarball string) (repo, commit string) {
	t.Helper()
	path := filepath.Join(OldKernelsDir(t), tarball)
	if _, err := os.Stat(path); err != nil {
		missing(t, "old kernel tarball "+path+" missing (set KBISECT_OLD_KERNELS)")
	}
	info, err := linuxsrc.Open(context.Background(), linuxsrc.Options{Tarball: path})
	if err != nil {
		t.Fatalf("import %s: %v", path, err)
	}
	return info.Dir, info.Commit
}
