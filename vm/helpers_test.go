package vm

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/u-root/u-root/pkg/cpio"
)

// The tests boot Debian's kernel (/boot/vmlinuz-*-amd64) with an initramfs
// whose /init is testdata/testinit, built once per test binary.

var (
	fixtureDir  string
	initOnce    sync.Once
	initBinary  string
	initErr     error
	accelLogged []string
	accelMu     sync.Mutex
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "kbisect-vm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fixtureDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// testKernel returns the newest Debian kernel in /boot or skips.
func testKernel(t testing.TB) string {
	t.Helper()
	k, _ := testenv.DebianKernel(t)
	return k
}

func needQEMU(t testing.TB) {
	t.Helper()
	testenv.NeedQEMU(t)
}

// testInit builds testdata/testinit as a static binary (once).
func testInit(t testing.TB) string {
	t.Helper()
	initOnce.Do(func() {
		initBinary = filepath.Join(fixtureDir, "testinit")
		cmd := exec.Command("go", "build", "-o", initBinary, "./testdata/testinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			initErr = fmt.Errorf("build testinit: %v\n%s", err, out)
		}
	})
	if initErr != nil {
		t.Fatal(initErr)
	}
	return initBinary
}

// modulesFor resolves the named modules and their dependencies from
// modules.dep, in load order, as paths under /lib/modules/<release>.
func modulesFor(t testing.TB, release string, names ...string) []string {
	t.Helper()
	dir := filepath.Join("/lib/modules", release)
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("modules of %s: %v (apt-get install linux-image-amd64)", release, err))
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		base := filepath.Base(mod)
		base = base[:strings.Index(base, ".ko")]
		byName[strings.ReplaceAll(base, "-", "_")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(m string)
	visit = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			visit(d)
		}
		order = append(order, filepath.Join(dir, m))
	}
	for _, n := range names {
		m, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			t.Fatalf("module %s not in %s/modules.dep", n, dir)
		}
		visit(m)
	}
	return order
}

// testInitramfs writes a cpio with /init and the given modules (listed in
// /modules.order) and returns its path.
func testInitramfs(t testing.TB, modules ...string) string {
	t.Helper()
	initPath := testInit(t)
	initData, err := os.ReadFile(initPath)
	if err != nil {
		t.Fatal(err)
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticRecord(initData, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	var order []string
	for _, m := range modules {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(m, "/")
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644}))
		order = append(order, "/"+name)
	}
	recs = append(recs, cpio.StaticFile("modules.order", strings.Join(order, "\n")+"\n", 0o644))
	path := filepath.Join(t.TempDir(), "initramfs.cpio")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.Newc.Writer(f)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// testConfig is a guest config for the test kernel with mode as kbtest.
func testConfig(t testing.TB, name, initrd, mode string) Config {
	t.Helper()
	return Config{
		Name:       name,
		Kernel:     testKernel(t),
		Initrd:     initrd,
		Append:     "kbtest=" + mode,
		ConsoleLog: filepath.Join(t.TempDir(), name+".console"),
		Timeout:    3 * time.Minute,
		Logf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			accelMu.Lock()
			accelLogged = append(accelLogged, msg)
			accelMu.Unlock()
			t.Log(msg)
		},
	}
}

// firstLine waits for the guest's first agent line.
func firstLine(t testing.TB, g *Guest) (string, time.Duration) {
	t.Helper()
	select {
	case l, ok := <-g.Lines():
		if !ok {
			o := g.Wait()
			t.Fatalf("guest %s ended without an agent line: %v\nconsole:\n%s", g.Name(), o.Err(), o.ConsoleTail)
		}
		return l, time.Since(g.Started())
	case <-time.After(3 * time.Minute):
		t.Fatalf("no agent line from %s in 3 minutes\nconsole:\n%s", g.Name(), g.ConsoleTail(30))
	}
	return "", 0
}

// assertGone checks that QEMU's process group and temp dir are gone.
func assertGone(t testing.TB, g *Guest) {
	t.Helper()
	m := g.m.(*qemuMachine)
	pid := m.pid()
	if pid == 0 {
		t.Fatal("no pid recorded")
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("qemu pid %d still exists (kill 0: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); err != syscall.ESRCH {
		t.Errorf("qemu process group %d still has members (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(m.tmpDir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s still exists (%v)", m.tmpDir, err)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
