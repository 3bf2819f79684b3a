package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Alive reports whether process pid runs (a zombie counts as gone).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// WaitGone waits up to d for process pid to be gone and reports whether it
// is.
func WaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// ReadPID waits up to d for the file at path to hold a process id (a test
// command writes it), fails t without one, and kills that process when the
// test ends should it still run.
func ReadPID(t testing.TB, path string, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process id in %s after %s", path, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MountTmpfs mounts a tmpfs of the given size (mount's size=, e.g. "256k")
// on a new directory, unmounted when the test ends: a small disk to fill.
// It needs root.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	NeedRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		Missing(t, "a tmpfs mount: "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}
