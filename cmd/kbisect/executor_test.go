package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecutorBadInput checks that bad --executor flags and missing
// kernels fail at once with exit status 2 and one line that says what to
// do, before anything runs or is made.
func TestExecutorBadInput(t *testing.T) {
	bin := buildCLI(t)
	// A file is enough: the executor flags are refused before it is read.
	kernel := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(kernel, []byte("not read\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing kernel", []string{"--kernel", "/nonexistent/bzImage"}, "--kernel /nonexistent/bzImage: no such kernel image"},
		{"missing peer kernel", []string{"--peer-kernel", "/nonexistent/bzImage"}, "--peer-kernel /nonexistent/bzImage: no such kernel image"},
		{"unknown executor", []string{"--executor", "slurm"}, "use local or lava"},
		{"unknown write sizes", []string{"--write-sizes", "random"}, `unknown write sizes "random": use fixed or vary`},
		{"unknown pattern", []string{"--pattern", "ones"}, `unknown pattern "ones": use zero or prng`},
		{"unknown Xen guest type", []string{"--hypervisor", "xen", "--xen-guest", "hvm"}, `unknown Xen guest type "hvm": use pv or pvh`},
		{"no url", []string{"--executor", "lava"}, "--lava-url"},
		{"not a url", []string{"--executor", "lava", "--lava-url", "lava.example.org", "--lava-token", "x"}, "http(s)"},
		{"no token", []string{"--executor", "lava", "--lava-url", "http://127.0.0.1:1/"}, "--lava-token"},
		{"server down", []string{"--executor", "lava", "--lava-url", "http://127.0.0.1:1/", "--lava-token", "x"}, "check --lava-url"},
		{"bad priority", []string{"--executor", "lava", "--lava-url", "http://127.0.0.1:1/", "--lava-token", "x", "--lava-priority", "101"}, "0..100"},
		{"artifacts without dir", []string{"--executor", "lava", "--lava-url", "http://127.0.0.1:1/", "--lava-token", "x", "--lava-artifacts", "http://h/"}, "--lava-artifacts-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--kernel", kernel, "--duration", "5s"}, tc.args...)
			cmd := exec.Command(bin, args...)
			cache := t.TempDir()
			cmd.Env = append(os.Environ(), "KBISECT_LAVA_URL=", "KBISECT_LAVA_TOKEN=", "KBISECT_CACHE="+cache)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q, want one line naming %q", out, tc.want)
			}
			// (goimports/ is x/tools' index directory, made in kbisect's
			// cache whatever the command: internal/cachedir/early.)
			ents, _ := os.ReadDir(cache)
			for _, e := range ents {
				if e.Name() != "goimports" {
					t.Errorf("bad input left %s in the cache", e.Name())
				}
			}
		})
	}
}
