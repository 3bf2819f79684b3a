package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kbisect/kbisect/internal/gitrepo"

	"github.com/kbisect/kbisect/kconfigs"
)

// KconfigOptions says which config to make for which commit.
type KconfigOptions struct {
	// Repo and Rev are the user's repository (only read) and the commit
	// whose Kconfig decides.
	Repo, Rev string
	// Base is the user's .config path or a base config name (defconfig,
	// tinyconfig, allnoconfig).
	Base string
	// Fragments are merged into Base after version gating.
	Fragments []*kconfigs.Fragment
	// CC, CacheDir and Slots are as in Options.
	CC       string
	CacheDir string
	Slots    int
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// Kconfig makes the config kbisect would build for o.Rev: o.Base with the
// fragments that apply to its version merged in, updated by olddefconfig
// (oldconfig before 3.7) in kbisect's checkout, and checked. It returns the
// kconfigs.Result (see its Report and Err); the build slot's own O= tree is
// left alone.
func Kconfig(ctx context.Context, o KconfigOptions) (*kconfigs.Result, error) {
	bo := &Options{Repo: o.Repo, Rev: o.Rev, Config: o.Base, Fragments: o.Fragments, CC: o.CC,
		CacheDir: o.CacheDir, Slots: o.Slots, Log: o.Log, NoCcache: true}
	p, err := plan(ctx, bo)
	if err != nil {
		return nil, err
	}
	repoID := sha256.Sum256([]byte(p.repo.Dir))
	slotsBase := filepath.Join(p.cacheRoot, "kbuild", filepath.Base(p.repo.Dir)+"-"+hex.EncodeToString(repoID[:])[:12])
	s, err := acquireSlot(ctx, slotsBase, bo.Slots, o.Log)
	if err != nil {
		return nil, err
	}
	defer s.release()
	ws, err := p.repo.Workspace(ctx, s.src)
	if err != nil {
		return nil, err
	}
	if err := ws.Checkout(ctx, p.commit); err != nil {
		return nil, err
	}
	rec := &recordingTree{WritableTree: DirTree(s.src)}
	if err := ApplyAll(p.fixups, rec, FixupEnv{Version: p.version, GCCMajor: p.toolchain.GCCMajor}); err != nil {
		return nil, err
	}
	if err := s.stabilizeMtimes(rec.written); err != nil {
		return nil, err
	}
	m := &kconfigs.Make{SrcDir: s.src, ObjDir: filepath.Join(s.dir, "kconfig"), Version: p.version,
		Vars: p.toolchain.Vars(), Env: p.env()}
	base := p.userCfg
	if base == nil {
		if base, err = m.Base(ctx, o.Base); err != nil {
			return nil, err
		}
	}
	res, err := m.Prepare(ctx, base, o.Fragments)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", gitrepo.Short(p.commit), err)
	}
	return res, nil
}
