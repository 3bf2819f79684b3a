package vmimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cache layout under Options.CacheDir:
//
//	<key>.cpio            finished images
//	layers/<kind>-<key>.cpio
//	locks/<name>.lock     flock(2) files, one per entry being built
//	tmp/<pid>-<n>/        build scratch, removed after the build
//
// Entries are written to "<final>.tmp-<pid>-<n>" in the same directory and
// renamed into place, so a reader sees a complete file or none. Builders of
// the same entry serialise on its lock and the later one finds it done.

// exists reports whether p is a regular file.
func exists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// ensure makes sure path exists, building it with build(ctx, tmp) under the
// entry's lock if not. build writes tmp; ensure renames it into place.
func ensure(ctx context.Context, cacheDir, path string, build func(ctx context.Context, tmp string) error) error {
	if exists(path) {
		return nil
	}
	unlock, err := lock(ctx, filepath.Join(cacheDir, "locks", filepath.Base(path)+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if exists(path) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d-%d", path, os.Getpid(), time.Now().UnixNano())
	if err := build(ctx, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncFile(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image cache: %w", err)
	}
	return nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// lock takes an exclusive flock on p, polling so ctx can cancel the wait.
func lock(ctx context.Context, p string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("image cache lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scratchDir makes a build scratch directory under the cache; its name
// carries the pid so sweep can tell abandoned ones.
func scratchDir(cacheDir string) (string, error) {
	base := filepath.Join(cacheDir, "tmp")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	d, err := os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	return d, nil
}

// sweep removes what builds by processes that no longer exist left behind:
// scratch dirs and half-written temp files.
func sweep(cacheDir string) {
	dead := func(name string) bool {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			return false
		}
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	if ents, err := os.ReadDir(filepath.Join(cacheDir, "tmp")); err == nil {
		for _, e := range ents {
			if pid, _, ok := strings.Cut(e.Name(), "-"); ok && dead(pid) {
				os.RemoveAll(filepath.Join(cacheDir, "tmp", e.Name()))
			}
		}
	}
	for _, d := range []string{cacheDir, filepath.Join(cacheDir, "layers")} {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			_, suffix, ok := strings.Cut(e.Name(), ".tmp-")
			if !ok {
				continue
			}
			if pid, _, ok := strings.Cut(suffix, "-"); ok && dead(pid) {
				os.Remove(filepath.Join(d, e.Name()))
			}
		}
	}
}
