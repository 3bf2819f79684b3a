package kbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kbisect/kbisect/kconfigs"
)

// TestCacheKeyGatedSettings: the build cache key follows the settings the
// fragments ask of the tree's version, not the fragments' text. A setting
// added for other versions keeps this version's kernels cached; one that
// applies to it, or a changed value, makes a new key.
func TestCacheKeyGatedSettings(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("VERSION = 3\nPATCHLEVEL = 14\nSUBLEVEL = 5\nEXTRAVERSION =\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=T", "-c", "user.email=t@t", "commit", "-qm", "3.14.5"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	frag := func(text string) *kconfigs.Fragment {
		f, err := kconfigs.ParseFragment("xen-guest", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	key := func(f *kconfigs.Fragment) string {
		t.Helper()
		p, err := plan(context.Background(), &Options{Repo: dir, Rev: "HEAD", Config: "tinyconfig", Fragments: []*kconfigs.Fragment{f}, CacheDir: t.TempDir(), NoCcache: true})
		if err != nil {
			t.Fatal(err)
		}
		return p.key
	}
	base := key(frag("CONFIG_XEN=y\nCONFIG_HVC_XEN=y\n"))
	// XEN_PV is gated to 4.14 and later: nothing changes for 3.14.5.
	if got := key(frag("CONFIG_XEN=y\nCONFIG_HVC_XEN=y\nCONFIG_XEN_PV=y\n")); got != base {
		t.Errorf("a setting gated to newer kernels changed 3.14.5's key: %s -> %s", base, got)
	}
	// A comment changes the text, not the settings.
	if got := key(frag("# Xen guest\nCONFIG_XEN=y\nCONFIG_HVC_XEN=y\n")); got != base {
		t.Errorf("a comment changed the key: %s -> %s", base, got)
	}
	for _, text := range []string{"CONFIG_XEN=y\nCONFIG_HVC_XEN=y\nCONFIG_BLOCK=y\n", "CONFIG_XEN=y\n# CONFIG_HVC_XEN is not set\n"} {
		if got := key(frag(text)); got == base {
			t.Errorf("fragment %q: same key as without its change", text)
		}
	}
}
