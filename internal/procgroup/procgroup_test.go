package procgroup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestRunKillsLeftovers: what a command leaves running in its group when
// it exits is killed; its exit status is kept.
func TestRunKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", `sleep 1000 & echo $! > bg; exit 3`)
	cmd.Dir = dir
	err := Run(cmd, syscall.SIGKILL)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("Run: %v, want exit status 3", err)
	}
	bg := testenv.ReadPID(t, filepath.Join(dir, "bg"), 10*time.Second)
	if !testenv.WaitGone(bg, 2*time.Second) {
		t.Errorf("the background sleep %d outlived its command", bg)
	}
}

// TestRunCancel: a cancelled context sends the stop signal to the whole
// group, grandchildren included.
func TestRunCancel(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `sh -c 'sleep 1000' & echo $! > bg; wait`)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := Run(cmd, syscall.SIGTERM); err == nil {
		t.Fatal("a cancelled command succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to stop", d)
	}
	bg := testenv.ReadPID(t, filepath.Join(dir, "bg"), 10*time.Second)
	if !testenv.WaitGone(bg, 2*time.Second) {
		t.Errorf("grandchild %d survived the cancellation", bg)
	}
}

// TestHelperProcess is the kbisect stand-in of TestKeeperOnDeath: it runs
// a command with Run and is then killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("PROCGROUP_TEST_DIR")
	if dir == "" {
		t.Skip("helper of TestKeeperOnDeath")
	}
	cmd := exec.Command("/bin/sh", "-c", `
sleep 1000 & echo $! > plain
sh -c 'trap "" TERM; echo $$ > stubborn; while :; do sleep 1; done' &
echo $$ > leader
wait`)
	cmd.Dir = dir
	Run(cmd, syscall.SIGKILL)
}

// TestKeeperOnDeath kills the process that ran Run with SIGKILL: the group
// it started gets SIGTERM at once (a plain sleep dies) and SIGKILL after
// Grace (a process that ignores SIGTERM dies too).
func TestKeeperOnDeath(t *testing.T) {
	dir := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	helper.Env = append(os.Environ(), "PROCGROUP_TEST_DIR="+dir)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Wait()
	pids := map[string]int{}
	for _, name := range []string{"plain", "stubborn", "leader"} {
		pids[name] = testenv.ReadPID(t, filepath.Join(dir, name), 10*time.Second)
	}
	helper.Process.Kill()
	killed := time.Now()
	for _, name := range []string{"leader", "plain"} {
		if !testenv.WaitGone(pids[name], 2*time.Second) {
			t.Errorf("%s (%d) still runs 2s after its kbisect was killed", name, pids[name])
		}
	}
	if !testenv.WaitGone(pids["stubborn"], Grace+3*time.Second) {
		t.Errorf("a process that ignores SIGTERM still runs %s after its kbisect was killed", time.Since(killed).Round(time.Second))
	} else if d := time.Since(killed); d < Grace-time.Second {
		t.Errorf("the process that ignores SIGTERM died after %s, before the grace", d)
	}
}

// TestBusy finds a process by its working directory, and WaitIdle waits
// for it to go.
func TestBusy(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "work", "0")
	os.MkdirAll(sub, 0o755)
	cmd := exec.Command("sleep", "1")
	cmd.Dir = sub
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	if got := Busy(dir); !slices.Contains(got, cmd.Process.Pid) {
		t.Errorf("Busy(%s) = %v, want %d in it", dir, got, cmd.Process.Pid)
	}
	if got := Busy(filepath.Join(dir, "work", "1")); len(got) != 0 {
		t.Errorf("Busy of an idle directory: %v", got)
	}
	if got := WaitIdle(context.Background(), dir, 10*time.Millisecond); len(got) == 0 {
		t.Errorf("WaitIdle returned at once while sleep runs")
	}
	if got := WaitIdle(context.Background(), dir, 5*time.Second); len(got) != 0 {
		t.Errorf("WaitIdle: %v still there after sleep 1 ended", got)
	}
}
