package linuxsrc

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeTar writes a small kernel-like tarball with a top directory, an
// executable, a symlink and a hard link.
func writeTar(t *testing.T, path string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	add(&tar.Header{Name: "linux-source-6.1/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "linux-source-6.1/Makefile", Typeflag: tar.TypeReg, Mode: 0o644},
		"# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 99\nEXTRAVERSION =\nNAME = Test\n")
	add(&tar.Header{Name: "linux-source-6.1/scripts/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "linux-source-6.1/scripts/setlocalversion", Typeflag: tar.TypeReg, Mode: 0o755}, "#!/bin/sh\n")
	add(&tar.Header{Name: "linux-source-6.1/net/ipv4/esp4.c", Typeflag: tar.TypeReg, Mode: 0o644}, "int x;\n")
	add(&tar.Header{Name: "linux-source-6.1/net/ipv4/esp4-link.c", Typeflag: tar.TypeLink, Linkname: "linux-source-6.1/net/ipv4/esp4.c"}, "")
	add(&tar.Header{Name: "linux-source-6.1/arch/x86/boot/dts", Typeflag: tar.TypeSymlink, Linkname: "../../../scripts"}, "")
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lsTree(t *testing.T, dir string) string {
	t.Helper()
	out, err := gitOut(context.Background(), dir, "ls-tree", "-r", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenSynthetic(t *testing.T) {
	ctx := context.Background()
	tarball := filepath.Join(t.TempDir(), "linux-source-6.1.tar")
	writeTar(t, tarball)

	a, err := Open(ctx, Options{Tarball: tarball, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != "6.1.99" {
		t.Errorf("version %q, want 6.1.99", a.Version)
	}
	tree := lsTree(t, a.Dir)
	for _, want := range []string{
		"100644 blob", "\tMakefile\n",
		"100755 blob", "\tscripts/setlocalversion\n",
		"120000 blob", "\tarch/x86/boot/dts\n",
		"\tnet/ipv4/esp4-link.c\n",
	} {
		if !strings.Contains(tree, want) {
			t.Errorf("tree lacks %q:\n%s", want, tree)
		}
	}
	if strings.Contains(tree, "linux-source-6.1") {
		t.Errorf("tree keeps the tarball's top directory:\n%s", tree)
	}
	target, _ := gitOut(ctx, a.Dir, "cat-file", "-p", "HEAD:arch/x86/boot/dts")
	if target != "../../../scripts" {
		t.Errorf("symlink target %q", target)
	}

	// Same tarball, another cache: the same commit hash (fixed identity and
	// date).
	b, err := Open(ctx, Options{Tarball: tarball, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Commit != b.Commit {
		t.Errorf("commit differs between imports: %s vs %s", a.Commit, b.Commit)
	}
	// A second Open of the same cache reuses the repository.
	c, err := Open(ctx, Options{Tarball: tarball, CacheDir: filepath.Dir(a.Dir)})
	if err != nil || c.Dir != a.Dir {
		t.Errorf("reopen: %v, %v", c, err)
	}
	// A clone can add commits without touching the cached repository.
	clone := filepath.Join(t.TempDir(), "user")
	if out, err := exec.Command("git", "clone", "--quiet", "--shared", a.Dir, clone).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(clone, "net/ipv4/esp4.c")); err != nil {
		t.Error(err)
	}
}

// TestOpenConcurrentProcesses starts several processes that open the same
// cache at once: all must get the same complete repository and no temporary
// directory may remain.
func TestOpenConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("LINUXSRC_TEST_CHILD_CACHE"); dir != "" {
		info, err := Open(context.Background(), Options{Tarball: os.Getenv("LINUXSRC_TEST_CHILD_TARBALL"), CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("COMMIT " + info.Commit + "\n")
		return
	}
	tarball := filepath.Join(t.TempDir(), "linux-source-6.1.tar")
	writeTar(t, tarball)
	cache := t.TempDir()
	const n = 4
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestOpenConcurrentProcesses$", "-test.v")
			cmd.Env = append(os.Environ(), "LINUXSRC_TEST_CHILD_CACHE="+cache, "LINUXSRC_TEST_CHILD_TARBALL="+tarball)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("child %d: %v\n%s", i, err, out)
			}
			outs[i] = string(out)
		}()
	}
	wg.Wait()
	var commit string
	for i, out := range outs {
		j := strings.Index(out, "COMMIT ")
		if j < 0 {
			t.Fatalf("child %d printed no commit:\n%s", i, out)
		}
		c := strings.Fields(out[j:])[1]
		if commit != "" && c != commit {
			t.Errorf("child %d got %s, another got %s", i, c, commit)
		}
		commit = c
	}
	ents, _ := os.ReadDir(cache)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 { // the repository and the lock file
		t.Errorf("cache holds %v, want one repository and .lock", names)
	}
}

func TestOpenMissingTarball(t *testing.T) {
	_, err := Open(context.Background(), Options{Tarball: "/nonexistent/linux.tar.xz", CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("err = %v, want a hint to install the package", err)
	}
}

func TestOpenBadTarball(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "linux.tar.xz")
	os.WriteFile(bad, []byte("not xz"), 0o644)
	cache := t.TempDir()
	if _, err := Open(context.Background(), Options{Tarball: bad, CacheDir: cache}); err == nil {
		t.Fatal("no error for a corrupt tarball")
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("failed import left %s", e.Name())
		}
	}
}
