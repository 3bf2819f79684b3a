package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// buildCLI builds kbisect and its agent into a temp dir, as `make build`
// does, and returns the kbisect binary.
func buildCLI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kbisect")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// leftovers lists what a run that used keepDir and tmpDir could leave
// behind: processes that mention keepDir (QEMU), anything in tmpDir, and
// named network namespaces (a private namespace dies with its last process,
// so a QEMU left behind is also how a namespace would leak).
func leftovers(keepDir, tmpDir string, netnsBefore map[string]bool) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if cmd, err := os.ReadFile(p + "/cmdline"); err == nil && bytes.Contains(cmd, []byte(keepDir)) {
			out = append(out, "process "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	ents, _ := os.ReadDir(tmpDir)
	for _, e := range ents {
		out = append(out, "temp "+e.Name())
	}
	for _, ns := range namedNetns() {
		if !netnsBefore[ns] {
			out = append(out, "netns "+ns)
		}
	}
	return out
}

func namedNetns() []string {
	var out []string
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestRunCleansUp: after a run, and after SIGINT or SIGTERM in the middle of
// one, nothing is left behind.
func TestRunCleansUp(t *testing.T) {
	testenv.NeedRoot(t)
	kernel, _ := testenv.DebianKernel(t)
	bin := buildCLI(t)
	cases := []struct {
		name   string
		signal syscall.Signal
		after  time.Duration
	}{
		{"complete", 0, 0},
		{"sigint-during-boot", syscall.SIGINT, 3 * time.Second},
		{"sigterm-during-traffic", syscall.SIGTERM, 14 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			netnsBefore := map[string]bool{}
			for _, ns := range namedNetns() {
				netnsBefore[ns] = true
			}
			keep, tmp := t.TempDir(), t.TempDir()
			dur := "5s"
			if tc.signal != 0 {
				dur = "60s"
			}
			cmd := exec.Command(bin, "run", "--kernel", kernel, "--topology", "nat", "--duration", dur, "--keep", keep, "--json")
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.signal != 0 {
				time.Sleep(tc.after)
				cmd.Process.Signal(tc.signal)
			}
			err := cmd.Wait()
			if tc.signal == 0 {
				var r struct{ Verdict, Reason string }
				if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil || r.Verdict != "pass" {
					t.Fatalf("run: %v %v verdict %q (%s)\n%s", err, jerr, r.Verdict, r.Reason, stderr.String())
				}
			} else if err == nil {
				t.Fatalf("interrupted run exited 0:\n%s", stdout.String())
			}
			// Give the kernel a moment to tear down a namespace whose last
			// process just exited.
			var leaks []string
			for i := 0; i < 20; i++ {
				if leaks = leftovers(keep, tmp, netnsBefore); len(leaks) == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if len(leaks) > 0 {
				t.Errorf("left behind: %s", strings.Join(leaks, ", "))
			}
		})
	}
}
