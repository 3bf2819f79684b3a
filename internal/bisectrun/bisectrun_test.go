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
		{"bad 124", "exit 124", 0, Bad, "exit 124"},
		{"cannot run 126", "./" + "noexec", 0, Abort, "exited 126"},
		{"not found 127", "no-such-program-kbisect", 0, Abort, "exited 127"},
		{"no such script 127", "/no/such/file.sh", 0, Abort, "126 and 127 abort"},
		{"exit 127", "exit 127", 0, Abort, "exited 127"},
		{"leftover process", "sleep 30 & echo started", 0, Good, "exit 0: started"},
		{"skip", "echo no build >&2; exit 125", 0, Skip, "exit 125: no build"},
		{"abort 128", "exit 128", 0, Abort, "exited 128"},
		{"abort 255", "exit 255", 0, Abort, "exited 255"},
		{"killed", "kill -9 $$", 0, Abort, "killed by signal killed"},
		{"timeout", "sleep 30", 300 * time.Millisecond, Abort, "timed out after 300ms"},
		{"environment", `test "$KBISECT_COMMIT" = abc && test -z "$GIT_DIR$GIT_WORK_TREE$GIT_INDEX_FILE$GIT_PREFIX$GIT_OBJECT_DIRECTORY" && test "$(pwd)" = "$WANT_DIR"`, 0, Good, "exit 0"},
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noexec"), []byte("exit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_OBJECT_DIRECTORY"} {
		t.Setenv(v, "/elsewhere")
	}
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
		{"./missing.sh --fast && echo", "", "does not exist"},
		{"FOO=1 ./missing.sh", "", "does not exist"},
		// A script given to a shell is the program.
		{"sh /no/such/file.sh", "", "does not exist"},
		{"bash -e missing.sh arg", "", "does not exist"},
		{"sh ./noexec.sh", "sh " + filepath.Join(dir, "noexec.sh"), ""},
		{"sh -x intree.sh", "sh -x intree.sh", ""},
		{"sh -ec 'exit 0'", "sh -ec 'exit 0'", ""},
		{"FOO=1 BAR=/x  ./ok.sh -v", "FOO=1 BAR=/x  " + filepath.Join(dir, "ok.sh") + " -v", ""},
		{"true", "true", ""},
		{"sh -c 'exit 1'", "sh -c 'exit 1'", ""},
		{"./intree.sh", "./intree.sh", ""},
		{"", "", "empty"},
		{" \t\n", "", "empty"},
		// Shell that git bisect run users write: sh's to judge, even a
		// command that is not found (it exits 127: an infrastructure
		// error).
		{"no-such-program-kbisect", "no-such-program-kbisect", ""},
		{"cd adir && make", "cd adir && make", ""},
		{"FOO=1 make check", "FOO=1 make check", ""},
		{"if test -f bug; then exit 1; fi", "if test -f bug; then exit 1; fi", ""},
		{"for i in 1 2 3; do ./ok.sh || exit 1; done", "for i in 1 2 3; do ./ok.sh || exit 1; done", ""},
		{"set -e; make; ./t", "set -e; make; ./t", ""},
		{"export CC=gcc; make", "export CC=gcc; make", ""},
		{"trap 'rm -f x' EXIT; ./ok.sh", "trap 'rm -f x' EXIT; ./ok.sh", ""},
		{": nothing to do", ": nothing to do", ""},
		{"'./ok.sh' x", "'./ok.sh' x", ""},
		{"f() { exit 0; }; f", "f() { exit 0; }; f", ""},
		{"(cd adir; true)", "(cd adir; true)", ""},
		{"! false", "! false", ""},
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
