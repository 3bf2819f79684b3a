package kbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

func TestSlotLock(t *testing.T) {
	base := t.TempDir()
	ctx := context.Background()
	a, err := acquireSlot(ctx, base, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second user of the only slot waits (here: until its deadline).
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	var log strings.Builder
	if _, err := acquireSlot(short, base, 1, &log); err == nil || !strings.Contains(err.Error(), "waiting for a build slot") {
		t.Errorf("second acquire of a busy slot: %v", err)
	}
	if !strings.Contains(log.String(), "busy") {
		t.Errorf("no waiting message: %q", log.String())
	}
	// With two slots it gets the other one.
	b, err := acquireSlot(ctx, base, 2, nil)
	if err != nil || b.dir == a.dir {
		t.Fatalf("second slot: %v, %v", b, err)
	}
	b.release()
	// Once released, the slot is free again.
	a.release()
	c, err := acquireSlot(ctx, base, 1, nil)
	if err != nil || c.dir != a.dir {
		t.Fatalf("reacquire: %v", err)
	}
	c.release()
}

// TestSlotLockAcrossProcesses holds a slot from another process (flock(1)
// on the same lock file).
func TestSlotLockAcrossProcesses(t *testing.T) {
	testenv.NeedCommand(t, "flock", "util-linux")
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "slot0"), 0o755)
	holder := exec.Command("flock", filepath.Join(base, "slot0", "lock"), "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s, err := acquireSlot(ctx, base, 1, nil); err == nil {
		s.release()
		t.Fatal("got a slot another process holds")
	}
}

// TestStableFixupMtimes checks that a file a fixup rewrites with the same
// contents as at the last build keeps that build's mtime (so make does not
// rebuild everything that includes it), and that new contents get a new
// mtime.
func TestStableFixupMtimes(t *testing.T) {
	dir := t.TempDir()
	s := &slot{dir: dir, src: filepath.Join(dir, "src")}
	tree := DirTree(s.src)
	write := func(content string) time.Time {
		os.Remove(filepath.Join(s.src, "include/linux/compiler-gcc12.h")) // as git clean does
		rec := &recordingTree{WritableTree: tree}
		if err := rec.WriteFile("include/linux/compiler-gcc12.h", []byte(content)); err != nil {
			t.Fatal(err)
		}
		if err := s.stabilizeMtimes(rec.written); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(s.src, "include/linux/compiler-gcc12.h"))
		return fi.ModTime()
	}
	first := write("v1")
	time.Sleep(20 * time.Millisecond)
	if again := write("v1"); !again.Equal(first) {
		t.Errorf("same contents: mtime %v, want the first build's %v", again, first)
	}
	time.Sleep(20 * time.Millisecond)
	second := write("v2")
	if !second.After(first) {
		t.Errorf("new contents kept the old mtime")
	}
	time.Sleep(20 * time.Millisecond)
	// Back to v1: the last build saw v2, so v1 must look new.
	if back := write("v1"); !back.After(second) {
		t.Errorf("contents changed back: mtime %v not after %v", back, second)
	}
}
