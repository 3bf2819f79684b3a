package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestExecutorBadInput checks that bad --executor flags fail at once with
// exit status 2 and one line that says what to do, before anything runs.
func TestExecutorBadInput(t *testing.T) {
	bin := buildCLI(t)
	kernel := "/boot/vmlinuz-does-not-matter"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown executor", []string{"--executor", "slurm"}, "use local or lava"},
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
			cmd.Env = append(os.Environ(), "KBISECT_LAVA_URL=", "KBISECT_LAVA_TOKEN=")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q, want one line naming %q", out, tc.want)
			}
		})
	}
}
