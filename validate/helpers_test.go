package validate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/demo"
	"github.com/kbisect/kbisect/kconfigs"
)

// demoSize and demoSeed pick the demo history the tests share (with
// internal/demo's tests, so it is usually cached).
const demoSize, demoSeed = 16, 1

// demoUser returns the demo history and a user's repository cloned from
// it, at a fixed place in the cache so that kbisect's clone of it, and that
// clone's build slot, carry over between test runs. The user's repository
// is a real non-bare one with a (sparse) checkout, a modified file and an
// untracked one, so the tests can check that nothing of it changes.
func demoUser(t *testing.T) (*demo.History, string) {
	t.Helper()
	ctx := context.Background()
	h, err := demo.Make(ctx, demo.HistoryOptions{Commits: demoSize, Seed: demoSeed})
	if err != nil {
		t.Fatalf("demo history: %v", err)
	}
	dir := filepath.Join(cachedir.Dir("validate-test"), "user-"+strings.TrimSuffix(filepath.Base(h.Dir), ".git"))
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return h, dir
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", h.Dir, tmp},
		{"-C", tmp, "sparse-checkout", "set", "--no-cone", "/README", "/net/ipv4/esp4.c"},
		{"-C", tmp, "checkout", "--quiet", "-B", "work", h.Bad},
	} {
		if _, err := runGit(ctx, "", nil, nil, args...); err != nil {
			t.Fatalf("make the user's repository: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "README"), []byte("a user's uncommitted edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "notes.txt"), []byte("untracked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return h, dir
}

// repoState is what must not change in a user's repository: HEAD, refs,
// the index, the status and the worktree's files.
func repoState(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, args := range [][]string{
		{"rev-parse", "HEAD"},
		{"symbolic-ref", "-q", "HEAD"},
		{"for-each-ref"},
		{"status", "--porcelain=v2", "--branch", "--untracked-files=all"},
		{"stash", "list"},
		{"worktree", "list", "--porcelain"},
	} {
		out, _ := runGit(ctx, dir, nil, nil, args...)
		b.WriteString(out)
	}
	for _, f := range []string{".git/index", ".git/HEAD", ".git/config", "README", "notes.txt"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		sum := sha256.Sum256(data)
		b.WriteString(f + " " + hex.EncodeToString(sum[:]) + " " + errString(err) + "\n")
	}
	return b.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// demoFragments are the fragments kbisect merges into tinyconfig for the
// natt-esp test (as cmd/kbisect does): the defaults plus "lean".
func demoFragments(t *testing.T) []*kconfigs.Fragment {
	t.Helper()
	frags := kconfigs.Defaults()
	lean, err := kconfigs.Resolve("lean")
	if err != nil {
		t.Fatal(err)
	}
	return append(frags, lean)
}
