package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/procgroup"
)

// slot is one build place for one repository: a kbisect-owned checkout
// (src), a persistent O= directory (obj) that lets neighbouring commits
// rebuild incrementally, and a lock so that two kbisect processes never use
// it at once.
type slot struct {
	dir      string
	src, obj string
	lock     *os.File
}

// acquireSlot locks one of n slots under base (the first free one), waiting
// while all are busy.
func acquireSlot(ctx context.Context, base string, n int, log io.Writer) (*slot, error) {
	if n < 1 {
		n = 1
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("build slots %s: %w", base, err)
	}
	said := false
	saidBusy := map[string]bool{}
	for {
		for i := 0; i < n; i++ {
			dir := filepath.Join(base, "slot"+strconv.Itoa(i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("build slot %s: %w", dir, err)
			}
			f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, fmt.Errorf("build slot %s: %w", dir, err)
			}
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				// Processes of an earlier build that escaped its process
				// group (internal/procgroup) may still work in it: a build
				// never shares its checkout with them.
				if pids := procgroup.WaitIdle(ctx, dir, procgroup.Linger); len(pids) > 0 {
					syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
					f.Close()
					if log != nil && !saidBusy[dir] {
						saidBusy[dir] = true
						fmt.Fprintf(log, "kbuild: build slot %s: processes %v of an earlier build still run in it; not using it\n", dir, pids)
					}
					continue
				}
				f.Truncate(0)
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
				return &slot{dir: dir, src: filepath.Join(dir, "src"), obj: filepath.Join(dir, "obj"), lock: f}, nil
			}
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock build slot %s: %w", dir, err)
			}
		}
		if !said && log != nil {
			pid, _ := os.ReadFile(filepath.Join(base, "slot0", "lock"))
			fmt.Fprintf(log, "kbuild: all %d build slot(s) of %s are busy (process %s); waiting\n", n, base, strings.TrimSpace(string(pid)))
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a build slot in %s: %w", base, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *slot) release() {
	syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	s.lock.Close()
}

// fixupRecord remembers, per file a fixup wrote in this slot, the contents
// hash and mtime it had at the last build. git checkout rewrites fixed-up
// files (they differ from the commit), and fixups write them again, which
// would make make rebuild everything that depends on them (for
// compiler-gccN.h: everything). When the contents are what the last build
// in this slot saw, the old mtime is put back, so the O= tree's objects stay
// valid.
type fixupRecord map[string]struct {
	Hash  string `json:"hash"`
	Mtime int64  `json:"mtime_ns"`
}

func (s *slot) recordPath() string { return filepath.Join(s.dir, "fixups.json") }

// stabilizeMtimes applies the record to the files fixups just wrote and
// saves the new record.
func (s *slot) stabilizeMtimes(written map[string]bool) error {
	old := fixupRecord{}
	if data, err := os.ReadFile(s.recordPath()); err == nil {
		json.Unmarshal(data, &old)
	}
	rec := fixupRecord{}
	for name := range written {
		p := filepath.Join(s.src, filepath.FromSlash(name))
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		mtime := fi.ModTime().UnixNano()
		if o, ok := old[name]; ok && o.Hash == hash {
			t := time.Unix(0, o.Mtime)
			if err := os.Chtimes(p, t, t); err != nil {
				return err
			}
			mtime = o.Mtime
		}
		rec[name] = struct {
			Hash  string `json:"hash"`
			Mtime int64  `json:"mtime_ns"`
		}{hash, mtime}
	}
	data, _ := json.Marshal(rec)
	return fsutil.WriteFile(s.recordPath(), data, 0o644)
}
