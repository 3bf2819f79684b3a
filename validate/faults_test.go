package validate

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestExecHung: a test command that never ends is stopped at the run's
// limit (the whole --budget) as a host failure, with what it started; the
// validation stops after three of them in a row, saying why (not
// "inconclusive: raise --budget").
func TestExecHung(t *testing.T) {
	// A small repository: base, and one patch on it.
	user := t.TempDir()
	id := []string{"-c", "user.name=t", "-c", "user.email=t@example.invalid"}
	git(t, user, "init", "-q", "-b", "main")
	for _, f := range []string{"a", "b"} {
		os.WriteFile(filepath.Join(user, f), []byte(f+"\n"), 0o644)
		git(t, user, "add", f)
		git(t, user, append(id, "commit", "-q", "-m", f)...)
	}
	pids := filepath.Join(t.TempDir(), "pids")
	start := time.Now()
	rep, err := Validate(context.Background(), Options{Repo: user, Base: "main~1", Patches: "main~1..main",
		Exec: "sleep 100000 & echo $! $$ >> " + pids + "; wait", Budget: 2 * time.Second, CacheDir: t.TempDir()})
	if err == nil {
		var b strings.Builder
		rep.WriteText(&b)
		t.Logf("%s", b.String())
	}
	if err == nil || !strings.Contains(err.Error(), "timed out after 2s") {
		t.Errorf("Validate: %v, want runs timed out after 2s", err)
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("took %s", d)
	}
	b, _ := os.ReadFile(pids)
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		if !testenv.WaitGone(pid, time.Second) {
			t.Errorf("process %d of the test still runs", pid)
		}
	}
}
