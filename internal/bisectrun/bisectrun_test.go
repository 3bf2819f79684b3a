package bisectrun

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestRun checks the exit statuses as git bisect run reads them, the
// environment, the output kept, and the timeout.
func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		shell   string
		timeout time.Duration
		want    Verdict
		reason  string // in Reason, or in Err for Abort
	}{
		{"good", "echo fine; exit 0", 0, Good, "exit 0: fine"},
		{"bad", "echo corrupted byte at 42; exit 1", 0, Bad, "exit 1: corrupted byte at 42"},
		{"bad 127", "exit 127", 0, Bad, "exit 127"},
		{"skip", "echo no build >&2; exit 125", 0, Skip, "exit 125: no build"},
		{"abort 128", "exit 128", 0, Abort, "exited 128"},
		{"abort 255", "exit 255", 0, Abort, "exited 255"},
		{"killed", "kill -9 $$", 0, Abort, "killed by signal killed"},
		{"timeout", "sleep 30", 300 * time.Millisecond, Abort, "timed out after 300ms"},
		{"environment", `test "$KBISECT_COMMIT" = abc && test -z "$GIT_DIR" && test "$(pwd)" = "$WANT_DIR"`, 0, Good, "exit 0"},
	}
	dir := t.TempDir()
	t.Setenv("GIT_DIR", "/elsewhere")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			start := time.Now()
			res, err := Run(context.Background(), Command{Shell: tc.shell, Dir: dir, Output: &log, Timeout: tc.timeout,
				Env: []string{"KBISECT_COMMIT=abc", "WANT_DIR=" + dir}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tc.want {
				t.Fatalf("verdict %s, want %s (%s, %v)", res.Verdict, tc.want, res.Reason(), res.Err)
			}
			got := res.Reason()
			if tc.want == Abort {
				got = res.Err.Error()
			} else if res.Err != nil {
				t.Errorf("error %v for a verdict", res.Err)
			}
			if !strings.Contains(got, tc.reason) {
				t.Errorf("%q, want %q in it", got, tc.reason)
			}
			if log.String() != res.Tail.String() {
				t.Errorf("log %q, tail %q", log.String(), res.Tail.String())
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if _, err := Run(ctx, Command{Shell: "sleep 30", Dir: dir}); err != context.Canceled {
		t.Errorf("cancelled run: %v, want context.Canceled", err)
	}
}

func TestCheck(t *testing.T) {
	repoDir := t.TempDir()
	dir := t.TempDir()
	testenv.WriteScript(t, dir, "ok.sh", "exit 0")
	if err := os.WriteFile(filepath.Join(dir, "noexec.sh"), []byte("exit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	testenv.WriteScript(t, repoDir, "intree.sh", "exit 0")
	t.Chdir(dir)
	tests := []struct {
		cmd, want, wantErr string
	}{
		{"./ok.sh --fast", filepath.Join(dir, "ok.sh") + " --fast", ""},
		{filepath.Join(dir, "ok.sh"), filepath.Join(dir, "ok.sh"), ""},
		{"./noexec.sh", "", "not executable"},
		{"./missing.sh", "", "does not exist"},
		{"./adir", "", "is a directory"},
		{"no-such-program-kbisect", "", "not a command in PATH"},
		{"true", "true", ""},
		{"sh -c 'exit 1'", "sh -c 'exit 1'", ""},
		{"./intree.sh", "./intree.sh", ""},
		{"", "", "empty"},
	}
	for _, tc := range tests {
		got, err := Check(tc.cmd, repoDir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Check(%q) = %q, %v; want error %q", tc.cmd, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Check(%q) = %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
}
