package linuxsrc_test

// These tests need Debian's linux-source-6.1: they live in an external test
// package so that they can ask internal/testenv (which imports linuxsrc).

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/linuxsrc"
	"github.com/kbisect/kbisect/internal/testenv"
)

// TestRepoReal imports the real Debian tarball into the shared kbisect cache
// (once; later runs reuse it).
func TestRepoReal(t *testing.T) {
	testenv.NeedLinuxSource(t)
	if testing.Short() {
		t.Skip("imports 1.3 GB on first use")
	}
	ctx := context.Background()
	dir, err := linuxsrc.Repo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := linuxsrc.ReadInfo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Version, "6.1.") {
		t.Errorf("version %q, want 6.1.x", info.Version)
	}
	for _, p := range []string{"net/ipv4/esp4.c", "kernel/configs/tiny.config", "arch/x86/configs/x86_64_defconfig"} {
		if _, err := linuxsrc.GitOut(ctx, dir, "cat-file", "-e", "HEAD:"+p); err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
}

// BenchmarkImport measures importing the real tarball into an empty cache.
func BenchmarkImport(b *testing.B) {
	testenv.NeedLinuxSource(b)
	for b.Loop() {
		cache := b.TempDir()
		if _, err := linuxsrc.Open(context.Background(), linuxsrc.Options{CacheDir: cache}); err != nil {
			b.Fatal(err)
		}
		var size int64
		filepath.Walk(cache, func(_ string, fi os.FileInfo, _ error) error {
			if fi != nil && !fi.IsDir() {
				size += fi.Size()
			}
			return nil
		})
		b.ReportMetric(float64(size)/(1<<20), "MiB")
	}
}
