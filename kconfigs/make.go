package kconfigs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/procgroup"
	"github.com/kbisect/kbisect/internal/tailbuf"
)

// Make runs a kernel tree's config targets in an out-of-tree (O=) build
// directory. It runs nothing but config targets.
type Make struct {
	// SrcDir is the kernel tree, ObjDir the O= directory (created if
	// needed).
	SrcDir, ObjDir string
	// Version of the tree; zero means read it from SrcDir's Makefile.
	Version Version
	// Vars are extra make variables, e.g. "CC=gcc-12",
	// "HOSTCC=gcc -fcommon". ARCH=x86_64 is added unless Vars sets ARCH.
	Vars []string
	// Env is the environment of make (nil: this process's).
	Env []string
	// Log receives make's output (nil: discarded).
	Log io.Writer
}

// UpdateTarget returns the config target that fills in new symbols with
// their defaults without asking: olddefconfig since 3.7, before that
// oldconfig fed with empty answers.
func UpdateTarget(v Version) string {
	if v.Less(V(3, 7, 0)) {
		return "oldconfig"
	}
	return "olddefconfig"
}

// BaseTarget maps a base config name (defconfig, tinyconfig, allnoconfig)
// to the make target that produces it in version v: tinyconfig exists
// since 3.17, allnoconfig stands in before.
func BaseTarget(v Version, name string) (string, error) {
	switch name {
	case "defconfig", "allnoconfig":
		return name, nil
	case "tinyconfig":
		if v.Less(V(3, 17, 0)) {
			return "allnoconfig", nil
		}
		return name, nil
	}
	return "", fmt.Errorf("unknown base config %q: use defconfig, tinyconfig, allnoconfig or a file", name)
}

// IsBaseName reports whether name is a base config name rather than a file.
func IsBaseName(name string) bool {
	_, err := BaseTarget(Version{}, name)
	return err == nil
}

func (m *Make) version() (Version, error) {
	if !m.Version.IsZero() {
		return m.Version, nil
	}
	v, err := TreeVersion(m.SrcDir)
	if err == nil {
		m.Version = v
	}
	return v, err
}

// Base runs the target for the base config name (see BaseTarget) and
// returns the resulting config.
func (m *Make) Base(ctx context.Context, name string) (*Config, error) {
	v, err := m.version()
	if err != nil {
		return nil, err
	}
	target, err := BaseTarget(v, name)
	if err != nil {
		return nil, err
	}
	if err := m.run(ctx, target, nil); err != nil {
		return nil, err
	}
	return ReadConfig(filepath.Join(m.ObjDir, ".config"))
}

// Update writes cfg as ObjDir/.config, runs UpdateTarget (olddefconfig or
// oldconfig) and returns the resulting config.
func (m *Make) Update(ctx context.Context, cfg *Config) (*Config, error) {
	v, err := m.version()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.ObjDir, 0o755); err != nil {
		return nil, fmt.Errorf("build directory %s: %w", m.ObjDir, err)
	}
	path := filepath.Join(m.ObjDir, ".config")
	if err := os.WriteFile(path, cfg.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	var stdin io.Reader
	target := UpdateTarget(v)
	if target == "oldconfig" {
		stdin = newlines{} // take every default, like `yes "" | make oldconfig`
	}
	if err := m.run(ctx, target, stdin); err != nil {
		return nil, err
	}
	return ReadConfig(path)
}

// newlines is an endless stream of empty answers.
type newlines struct{}

func (newlines) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '\n'
	}
	return len(p), nil
}

// ConfigError is a config target that failed.
type ConfigError struct {
	Target string
	Dir    string
	Output string // the last lines of make's output
	Err    error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("make %s in %s failed: %v: %s", e.Target, e.Dir, e.Err, e.Output)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func (m *Make) run(ctx context.Context, target string, stdin io.Reader) error {
	if err := os.MkdirAll(m.ObjDir, 0o755); err != nil {
		return fmt.Errorf("build directory %s: %w", m.ObjDir, err)
	}
	args := []string{"-C", m.SrcDir, "O=" + m.ObjDir}
	hasArch := false
	for _, v := range m.Vars {
		hasArch = hasArch || strings.HasPrefix(v, "ARCH=")
	}
	if !hasArch {
		args = append(args, "ARCH=x86_64")
	}
	args = append(append(args, m.Vars...), target)
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Env = m.Env
	cmd.Stdin = stdin
	cmd.WaitDelay = 10 * time.Second
	tail := tailbuf.New(4096)
	var out io.Writer = tail
	if m.Log != nil {
		out = io.MultiWriter(tail, m.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own, SIGTERM to all of it when cancelled or
	// when kbisect dies (see internal/procgroup).
	if err := procgroup.Run(cmd, syscall.SIGTERM); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("make %s in %s: %w", target, m.ObjDir, ctx.Err())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("make %s: %w", target, err)
		}
		return &ConfigError{Target: target, Dir: m.ObjDir, Output: strings.Join(tail.Lines(5), " | "), Err: err}
	}
	return nil
}
