package kbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Tree is read access to a kernel source tree: a checkout (DirTree) or a
// commit in a repository (what fixup detectors read before any checkout,
// so that the cache key is known without one).
type Tree interface {
	// ReadFile returns the contents of the file at name (slash-separated,
	// relative to the tree's top); an absent file is fs.ErrNotExist.
	ReadFile(name string) ([]byte, error)
}

// WritableTree is a Tree fixups can change.
type WritableTree interface {
	Tree
	// WriteFile replaces (or creates) the file at name.
	WriteFile(name string, data []byte) error
	// Remove deletes the file or directory tree at name; an absent one is
	// no error.
	Remove(name string) error
}

// DirTree is a kernel tree in a directory.
type DirTree string

// ReadFile implements Tree.
func (d DirTree) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), filepath.FromSlash(name)))
}

// WriteFile implements WritableTree. It keeps the file's mode, and writes
// nothing if the contents are already data (so mtimes stay put).
func (d DirTree) WriteFile(name string, data []byte) error {
	p := filepath.Join(string(d), filepath.FromSlash(name))
	mode := fs.FileMode(0o644)
	if old, err := os.ReadFile(p); err == nil {
		if bytes.Equal(old, data) {
			return nil
		}
		if fi, err := os.Stat(p); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, mode)
}

// Remove implements WritableTree.
func (d DirTree) Remove(name string) error {
	return os.RemoveAll(filepath.Join(string(d), filepath.FromSlash(name)))
}

// commitTree reads files of one commit from a repository with git.
type commitTree struct {
	ctx    context.Context
	repo   *gitrepo.Repo
	commit string
}

func (c commitTree) ReadFile(name string) ([]byte, error) {
	out, err := c.repo.Git(c.ctx, "cat-file", "blob", c.commit+":"+name)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, c.ctx.Err()
		}
		return nil, fmt.Errorf("%s at %s: %w", name, c.commit, fs.ErrNotExist)
	}
	return []byte(out), nil
}

// exists reports whether name is in t.
func exists(t Tree, name string) (bool, error) {
	_, err := t.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// recordingTree remembers which files were written through it.
type recordingTree struct {
	WritableTree
	written map[string]bool
}

func (r *recordingTree) WriteFile(name string, data []byte) error {
	if r.written == nil {
		r.written = map[string]bool{}
	}
	r.written[name] = true
	return r.WritableTree.WriteFile(name, data)
}
