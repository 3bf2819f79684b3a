package kbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kbisect/kbisect/kconfigs"
)

// freeBytes returns the space available to us on dir's filesystem.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// estimateNeed guesses the disk a build takes: a checkout if the slot has
// none, the O= tree if it is new (more for big configs and debug info),
// the artifact, and headroom for incremental builds.
func estimateNeed(s *slot, cfg *kconfigs.Config) uint64 {
	const gib = 1 << 30
	need := uint64(1 * gib) // headroom: incremental build, artifact, logs
	if _, err := os.Stat(filepath.Join(s.src, "Makefile")); err != nil {
		need += 2 * gib // a 6.x checkout is 1.5 GB
	}
	if _, err := os.Stat(filepath.Join(s.obj, "vmlinux")); err != nil {
		switch {
		case cfg == nil || cfg.Len() < 1500:
			need += 1 * gib // tinyconfig-sized
		default:
			need += 6 * gib // a distro-sized config
		}
		if cfg != nil && cfg.Value("DEBUG_INFO") == "y" {
			need += 10 * gib
		}
	}
	if cfg != nil && cfg.Value("MODULES") == "y" {
		need += 2 * gib
	}
	return need
}
