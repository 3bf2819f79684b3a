package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kconfigs"
)

// configRecord remembers how the slot's O=/.config was made, so that the
// next build can skip the config targets when nothing they read changed:
// the config step costs as much as an incremental build on 2 busy cores
// (Kconfig runs the compiler for each of its probes).
type configRecord struct {
	Input string `json:"input"` // hash of the config inputs (see configInput)
	Tree  string `json:"tree"`  // tree the config was made for
	Final string `json:"final"` // hash of the resulting .config
}

// kconfigPaths are what the config targets read besides the config: the
// Kconfig files, the conf program, and the base configs.
var kconfigPaths = []string{":(glob)**/Kconfig*", "scripts/kconfig", "scripts/Kconfig.include", "kernel/configs", "arch/x86/configs", "Makefile"}

func (s *slot) configRecordPath() string { return filepath.Join(s.dir, "config.json") }
func (s *slot) baseConfigPath() string   { return filepath.Join(s.dir, "base.config") }

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// configInput identifies what the config step starts from: the user's
// config or base name, the fragments, and the toolchain (Kconfig sees the
// compiler).
func (p *planned) configInput(toolchainID string) string {
	h := sha256.New()
	if p.userCfg != nil {
		fmt.Fprintf(h, "config %s\n", hashBytes(p.userCfg.Bytes()))
	} else {
		fmt.Fprintf(h, "base %s\n", p.o.Config)
	}
	for _, f := range p.o.Fragments {
		fmt.Fprintf(h, "fragment %s\n", f.Hash())
	}
	fmt.Fprintf(h, "toolchain %s\n", toolchainID)
	return hex.EncodeToString(h.Sum(nil))
}

// configure makes the final config in the slot's O= directory, or reuses
// the one there when the last build in this slot started from the same
// inputs and no file the config targets read changed since. When it does
// run the targets and the result equals the previous .config, it puts the
// old mtime back so that make does not rerun syncconfig for nothing.
func (p *planned) configure(ctx context.Context, s *slot, ws *gitrepo.Workspace, m *kconfigs.Make) (*kconfigs.Result, bool, error) {
	cfgPath := filepath.Join(s.obj, ".config")
	oldData, _ := os.ReadFile(cfgPath)
	var oldTime time.Time
	if fi, err := os.Stat(cfgPath); err == nil {
		oldTime = fi.ModTime()
	}
	input := p.configInput(p.toolchain.ID(ctx))

	var rec configRecord
	if data, err := os.ReadFile(s.configRecordPath()); err == nil && json.Unmarshal(data, &rec) == nil &&
		rec.Input == input && oldData != nil && rec.Final == hashBytes(oldData) {
		same := rec.Tree == p.tree
		if !same {
			args := append([]string{"diff", "--quiet", rec.Tree, p.tree, "--"}, kconfigPaths...)
			_, err := ws.Git(ctx, args...)
			same = err == nil
		}
		base := p.userCfg
		if base == nil {
			base, _ = kconfigs.ReadConfig(s.baseConfigPath())
		}
		if same && base != nil {
			final, err := kconfigs.ParseConfig(oldData)
			if err == nil {
				r, _ := kconfigs.Plan(p.version, base, p.o.Fragments)
				if err := r.Complete(s.src, final); err != nil {
					return nil, false, err
				}
				return r, true, nil
			}
		}
	}
	os.Remove(s.configRecordPath())

	base := p.userCfg
	if base == nil {
		var err error
		if base, err = m.Base(ctx, p.o.Config); err != nil {
			return nil, false, err
		}
		if err := fsutil.WriteFile(s.baseConfigPath(), base.Bytes(), 0o644); err != nil {
			return nil, false, err
		}
	}
	r, err := m.Prepare(ctx, base, p.o.Fragments)
	if err != nil {
		return nil, false, err
	}
	newData, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, false, err
	}
	if oldData != nil && string(newData) == string(oldData) && !oldTime.IsZero() {
		os.Chtimes(cfgPath, oldTime, oldTime)
	}
	rec = configRecord{Input: input, Tree: p.tree, Final: hashBytes(newData)}
	data, _ := json.Marshal(rec)
	if err := fsutil.WriteFile(s.configRecordPath(), data, 0o644); err != nil {
		return nil, false, err
	}
	return r, false, nil
}
