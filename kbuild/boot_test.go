package kbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/u-root/u-root/pkg/cpio"
)

// bootInitramfs builds testdata/bootinit as a static binary and packs it
// as /init in an uncompressed cpio with /dev/console, in dir.
func bootInitramfs(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", bin, "./testdata/bootinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test /init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("init", string(data), 0o755),
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "init.cpio")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var bootLine = regexp.MustCompile(`KBISECT-BOOT-OK release=(\S+) uptime=([0-9.]+)`)

// bootResult is what a boot check saw.
type bootResult struct {
	Release string
	Uptime  string // guest uptime when /init ran, seconds
	Wall    time.Duration
	Console string
}

// boot starts bzImage under QEMU TCG with the test /init and waits for its
// line.
func boot(t testing.TB, bzImage, initrd string) bootResult {
	t.Helper()
	testenv.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", bzImage, "-initrd", initrd, "-append", "console=ttyS0 panic=-1")
	out, err := cmd.CombinedOutput()
	r := bootResult{Wall: time.Since(start), Console: string(out)}
	m := bootLine.FindStringSubmatch(r.Console)
	if m == nil {
		t.Fatalf("the kernel did not run /init (qemu: %v); console:\n%s", err, tail(r.Console, 3000))
	}
	r.Release, r.Uptime = m[1], m[2]
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (r bootResult) String() string {
	return fmt.Sprintf("release %s, /init at guest uptime %s s, QEMU ran %s", r.Release, r.Uptime, r.Wall.Round(10*time.Millisecond))
}

// TestBootArtifact boots the kernel of an existing artifact directory
// (KBISECT_BOOT_ARTIFACT=dir), e.g. one printed by `kbisect build`.
func TestBootArtifact(t *testing.T) {
	dir := os.Getenv("KBISECT_BOOT_ARTIFACT")
	if dir == "" {
		t.Skip("set KBISECT_BOOT_ARTIFACT to an artifact directory")
	}
	a, err := ReadArtifact(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := boot(t, a.BzImage, bootInitramfs(t, t.TempDir()))
	t.Logf("%s", r)
	t.Logf("console:\n%s", r.Console)
}
