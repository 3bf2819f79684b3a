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

// TestMakeProcessGroup: make runs in a process group of its own. What a
// recipe leaves running is killed when make ends, and a cancelled build
// stops the recipe's children too (internal/procgroup).
func TestMakeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	s := &slot{dir: dir, src: filepath.Join(dir, "src"), obj: filepath.Join(dir, "obj")}
	os.MkdirAll(s.src, 0o755)
	os.MkdirAll(s.obj, 0o755)
	mk := "leave:\n\tsleep 1000 > /dev/null 2>&1 & echo $$! > $(O)/leftover\n" +
		"hang:\n\tsh -c 'echo $$$$ > $(O)/child; sleep 1000'\n"
	if err := os.WriteFile(filepath.Join(s.src, "Makefile"), []byte(mk), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &planned{o: &Options{Jobs: 1}}
	var out strings.Builder
	if err := p.make(context.Background(), s, nil, os.Environ(), &out, "leave"); err != nil {
		t.Fatalf("make: %v\n%s", err, out.String())
	}
	if pid := testenv.ReadPID(t, filepath.Join(s.obj, "leftover"), time.Second); !testenv.WaitGone(pid, 2*time.Second) {
		t.Errorf("the recipe's background sleep %d outlived make", pid)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(s.obj, "child")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	if err := p.make(ctx, s, nil, os.Environ(), &syncBuffer{}, "hang"); err == nil {
		t.Fatal("a cancelled make succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled make took %s", d)
	}
	if pid := testenv.ReadPID(t, filepath.Join(s.obj, "child"), time.Second); !testenv.WaitGone(pid, 2*time.Second) {
		t.Errorf("the recipe's child %d survived the cancellation", pid)
	}
}

// TestSlotSurvivor: a slot in which a process still works (one that left
// an earlier build's process group) is not used.
func TestSlotSurvivor(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "slot0", "src")
	os.MkdirAll(src, 0o755)
	survivor := exec.Command("sleep", "1000")
	survivor.Dir = src
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { survivor.Process.Kill(); survivor.Wait() }()
	var log syncBuffer
	s, err := acquireSlot(context.Background(), base, 2, &log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	if s.dir != filepath.Join(base, "slot1") || !strings.Contains(log.String(), "still run in it") {
		t.Errorf("got %s (log %q), want slot1 and a message about slot0", s.dir, log.String())
	}
}
