package vmimage

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/u-root/u-root/pkg/cpio"
)

// standIn is the /init the tests build instead of the real agent: it reports
// its uptime, loads the modules, installs one ESP-in-UDP SA per suite and runs
// the shell as /kbisect/params.json says, then restarts (QEMU runs with
// -no-reboot, so that ends it).
const standIn = `package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type params struct {
	Modules []string ` + "`json:\"modules\"`" + `
	XFRM    bool     ` + "`json:\"xfrm\"`" + `
	Shell   bool     ` + "`json:\"shell\"`" + `
}

func uptime() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func load(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		b, rerr := os.ReadFile(p)
		if rerr != nil {
			return rerr
		}
		err = unix.InitModule(b, "")
	}
	return err
}

func sa(spi int, crypt, auth, aead *netlink.XfrmStateAlgo) error {
	return netlink.XfrmStateAdd(&netlink.XfrmState{
		Src: net.ParseIP("10.0.0.1"), Dst: net.ParseIP("10.0.0.2"),
		Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TRANSPORT,
		Spi: spi, Reqid: spi,
		Crypt: crypt, Auth: auth, Aead: aead,
		Encap: &netlink.XfrmStateEncap{Type: netlink.XFRM_ENCAP_ESPINUDP, SrcPort: 4500, DstPort: 4500, OriginalAddress: net.IPv4zero},
	})
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return fmt.Sprintf("errno=%d %v", int(e), err)
	}
	return err.Error()
}

func main() {
	fmt.Printf("STANDIN-INIT uptime=%.3f\n", uptime())
	var p params
	if b, err := os.ReadFile("/kbisect/params.json"); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			fmt.Printf("STANDIN-PARAMS %v\n", err)
		}
	}
	for _, m := range p.Modules {
		fmt.Printf("STANDIN-MODULE %s %s\n", m, result(load(m)))
	}
	if p.XFRM {
		key := func(n int) []byte { return make([]byte, n) }
		suites := []struct {
			name              string
			crypt, auth, aead *netlink.XfrmStateAlgo
		}{
			{"cbc-aes-sha1", &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: key(16)}, &netlink.XfrmStateAlgo{Name: "hmac(sha1)", Key: key(20), TruncateLen: 96}, nil},
			{"cbc-aes-sha256", &netlink.XfrmStateAlgo{Name: "cbc(aes)", Key: key(16)}, &netlink.XfrmStateAlgo{Name: "hmac(sha256)", Key: key(32), TruncateLen: 128}, nil},
			{"gcm-aes", nil, nil, &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: key(20), ICVLen: 128}},
			{"null-sha1", &netlink.XfrmStateAlgo{Name: "ecb(cipher_null)", Key: key(0)}, &netlink.XfrmStateAlgo{Name: "hmac(sha1)", Key: key(20), TruncateLen: 96}, nil},
		}
		for i, s := range suites {
			fmt.Printf("STANDIN-XFRM %s %s\n", s.name, result(sa(0x1000+i, s.crypt, s.auth, s.aead)))
		}
	}
	if p.Shell {
		cmd := exec.Command("/bbin/gosh", "-c", "echo STANDIN-SHELL $(ls /bbin | wc -l)")
		cmd.Env = []string{"PATH=/bbin:/bin"}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			fmt.Printf("STANDIN-SHELL-ERROR %v\n", err)
		}
	}
	fmt.Println("STANDIN-DONE")
	unix.Sync()
	time.Sleep(20 * time.Millisecond)
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
`

var (
	// testRoot holds the shared source copy and image cache of a test run,
	// so the busybox is built once per run.
	testRoot string
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "vmimage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testRoot = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

var (
	srcOnce sync.Once
	srcDir  string
	srcErr  error
)

// standInSource returns a kbisect module source dir whose agent package is
// the stand-in: the real go.mod and go.sum, nothing else of the repository.
func standInSource(tb testing.TB) string {
	tb.Helper()
	srcOnce.Do(func() {
		srcDir, srcErr = newStandInSource(filepath.Join(testRoot, "src"))
	})
	if srcErr != nil {
		tb.Fatal(srcErr)
	}
	return srcDir
}

func newStandInSource(dir string) (string, error) {
	root, err := findSourceDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "kbisect-agent"), 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, os.WriteFile(filepath.Join(dir, "cmd", "kbisect-agent", "main.go"), []byte(standIn), 0o644)
}

// sharedCache is the image cache shared by the tests of one run.
func sharedCache() string { return filepath.Join(testRoot, "cache") }

// debianKernel returns Debian's installed 6.1 kernel and its modules dir,
// or skips the test (fails it under KBISECT_REQUIRE_VM).
func debianKernel(tb testing.TB) (kernel, modules string) {
	tb.Helper()
	return testenv.DebianModules(tb, "6.1.0-")
}

// debianModules returns Debian's 6.1 modules dir, or skips the test.
func debianModules(tb testing.TB) string {
	tb.Helper()
	_, md := testenv.DebianModules(tb, "6.1.0-")
	return md
}

// bootResult is what a boot of the stand-in printed.
type bootResult struct {
	console string
	wall    time.Duration
	uptime  float64 // guest uptime when /init started
}

// boot runs Debian's kernel with initrd under QEMU TCG until the stand-in
// restarts the guest.
func boot(tb testing.TB, kernel, initrd string, qemuArgs ...string) bootResult {
	tb.Helper()
	testenv.NeedQEMU(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet"}, qemuArgs...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := bootResult{console: strings.ReplaceAll(out.String(), "\r", ""), wall: time.Since(start)}
	if err != nil {
		tb.Fatalf("qemu: %v\n%s", err, r.console)
	}
	if !strings.Contains(r.console, "STANDIN-DONE") {
		tb.Fatalf("stand-in /init did not finish; console:\n%s", r.console)
	}
	m := regexp.MustCompile(`STANDIN-INIT uptime=([0-9.]+)`).FindStringSubmatch(r.console)
	if m == nil {
		tb.Fatalf("no STANDIN-INIT line; console:\n%s", r.console)
	}
	r.uptime, _ = strconv.ParseFloat(m[1], 64)
	return r
}

// entry is a file of an initramfs as the kernel would leave it.
type entry struct {
	cpio.Info
	data []byte
}

// readImage reads every archive of a concatenated initramfs with u-root's
// cpio reader and returns the files as the kernel leaves them (a later
// archive's file replaces an earlier one), and how many archives there were.
func readImage(tb testing.TB, p string) (map[string]entry, int) {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string]entry{}
	off, n := int64(0), 0
	for {
		for off < int64(len(b)) && b[off] == 0 { // padding between archives
			off++
		}
		if off >= int64(len(b)) {
			break
		}
		n++
		rr := cpio.Newc.Reader(bytes.NewReader(b[off:]))
		var end int64
		for {
			rec, err := rr.ReadRecord()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatalf("%s: archive %d at %d: %v", p, n, off, err)
			}
			data, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			if err != nil {
				tb.Fatal(err)
			}
			files[rec.Name] = entry{rec.Info, data}
			end = rec.FilePos + int64(rec.FileSize)
		}
		// The trailer record follows the last record, 4-byte aligned:
		// 110 bytes of header plus "TRAILER!!!\0", padded to 124.
		off += (end+3)&^3 + 124
	}
	return files, n
}

// checkStaticBinary checks that data is a static, stripped x86-64 ELF.
func checkStaticBinary(tb testing.TB, name string, data []byte) {
	tb.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("%s: not an ELF file: %v", name, err)
	}
	if f.Machine != elf.EM_X86_64 {
		tb.Errorf("%s: machine %v, want x86-64", name, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			tb.Errorf("%s: has an ELF interpreter: not static", name)
		}
	}
	if f.Section(".symtab") != nil {
		tb.Errorf("%s: has a symbol table: not stripped", name)
	}
}
