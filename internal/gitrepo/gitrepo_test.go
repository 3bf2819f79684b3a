package gitrepo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newRepo makes a repository with commits a <- b and returns it with their
// hashes.
func newRepo(t *testing.T) (dir, a, b string) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	id := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid"}
	run := func(args ...string) string {
		out, err := Run(ctx, Cmd{Dir: dir, Env: id}, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	run("init", "--quiet", "-b", "main")
	run("commit", "--quiet", "--allow-empty", "-m", "a")
	a = run("rev-parse", "HEAD")
	run("commit", "--quiet", "--allow-empty", "-m", "b")
	b = run("rev-parse", "HEAD")
	return dir, a, b
}

// TestRunIgnoresRedirectingEnv checks that a user's GIT_DIR, GIT_INDEX_FILE
// or identity never steer kbisect's git commands: they act on Cmd.Dir.
func TestRunIgnoresRedirectingEnv(t *testing.T) {
	ctx := context.Background()
	dir, a, b := newRepo(t)
	other, _, otherB := newRepo(t)
	t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
	t.Setenv("GIT_INDEX_FILE", filepath.Join(other, ".git", "index"))
	t.Setenv("GIT_AUTHOR_NAME", "someone else")

	repo := &Repo{Dir: dir}
	cases := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"resolve HEAD", func() (string, error) { return repo.Resolve(ctx, "HEAD") }, b},
		{"run rev-parse", func() (string, error) {
			out, err := Run(ctx, Cmd{Dir: dir}, "rev-parse", "HEAD~1")
			return strings.TrimSpace(out), err
		}, a},
		{"author from Cmd.Env only", func() (string, error) {
			out, err := Run(ctx, Cmd{Dir: dir, Env: []string{"GIT_AUTHOR_NAME=kb"}}, "var", "GIT_AUTHOR_IDENT")
			return strings.Fields(out)[0], err
		}, "kb"},
	}
	for _, c := range cases {
		got, err := c.got()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s = %s, want %s (the other repository's head is %s)", c.name, got, c.want, otherB)
		}
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{{a, b, true}, {b, a, false}, {b, b, true}} {
		got, err := repo.IsAncestor(ctx, c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("IsAncestor(%.7s, %.7s) = %v, %v; want %v", c.a, c.b, got, err, c.want)
		}
	}
	if _, err := repo.IsAncestor(ctx, "0000000000000000000000000000000000000001", b); err == nil {
		t.Error("IsAncestor of a missing commit: no error")
	}
}

// TestRunError checks that a failure carries git's standard error, both in
// the one-line message and whole in the *Error.
func TestRunError(t *testing.T) {
	dir, _, _ := newRepo(t)
	_, err := Run(context.Background(), Cmd{Dir: dir, Stdin: []byte("not a patch\n")}, "apply", "--check", "-")
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if !strings.Contains(ge.Stderr, "No valid patches") || strings.Contains(err.Error(), "\n") {
		t.Errorf("stderr %q, message %q", ge.Stderr, err.Error())
	}
}

// TestOpen checks the one-line errors for paths that are not repositories.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir, _, _ := newRepo(t)
	if r, err := Open(ctx, dir); err != nil || r.Dir != dir {
		t.Errorf("Open(%s) = %+v, %v", dir, r, err)
	}
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "f"), nil, 0o644)
	for _, d := range []string{plain, filepath.Join(plain, "missing")} {
		if _, err := Open(ctx, d); err == nil || !strings.Contains(err.Error(), "give --repo") {
			t.Errorf("Open(%s) = %v, want an error naming --repo", d, err)
		}
	}
}

// TestOpenNotSafe: a repository of another user that git refuses
// (safe.directory) is named as such, not as "not a git repository"; with
// safe.directory set, it opens.
func TestOpenNotSafe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a repository to another user")
	}
	ctx := context.Background()
	dir, _, _ := newRepo(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(home, ".gitconfig"))
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "safe.directory") || strings.Contains(err.Error(), "not a git repository") {
		t.Fatalf("Open of a repository git refuses: %v, want an error naming safe.directory", err)
	}
	if _, err := Run(ctx, Cmd{}, "config", "--global", "--add", "safe.directory", dir); err != nil {
		t.Fatal(err)
	}
	if r, err := Open(ctx, dir); err != nil || r.Dir != dir {
		t.Errorf("Open with safe.directory set: %+v, %v", r, err)
	}
}

// TestRefs: refs by pattern, by name or by creation date.
func TestRefs(t *testing.T) {
	ctx := context.Background()
	dir, a, b := newRepo(t)
	for _, tag := range []struct{ name, commit, date string }{
		{"vb", a, "2000-01-01T00:00:00Z"}, {"va", b, "2001-01-01T00:00:00Z"}, {"other", b, "2002-01-01T00:00:00Z"},
	} {
		env := []string{"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_COMMITTER_DATE=" + tag.date}
		if _, err := Run(ctx, Cmd{Dir: dir, Env: env}, "tag", "-a", "-m", tag.name, tag.name, tag.commit); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sortBy   string
		patterns []string
		want     string
	}{
		{"", []string{"refs/tags/v*"}, "va vb"},
		{"creatordate", []string{"refs/tags/v*"}, "vb va"},
		{"", []string{"refs/heads", "refs/tags"}, "main other va vb"},
		{"", []string{"refs/tags/none*"}, ""},
	} {
		got, err := r.Refs(ctx, tc.sortBy, tc.patterns...)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("Refs(%q, %q) = %q, %v; want %q", tc.sortBy, tc.patterns, got, err, tc.want)
		}
	}
}

// TestCheckoutStaleIndexLock: a kbisect stopped in the middle of a checkout
// leaves git's index lock in its workspace; the next checkout goes on.
func TestCheckoutStaleIndexLock(t *testing.T) {
	ctx := context.Background()
	dir, a, b := newRepo(t)
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := r.Workspace(ctx, filepath.Join(t.TempDir(), "ws"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Checkout(ctx, a); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(ws.Dir, ".git", "index.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ws.Checkout(ctx, b); err != nil {
		t.Fatalf("checkout with a stale index lock: %v", err)
	}
	if head, err := ws.Git(ctx, "rev-parse", "HEAD"); err != nil || strings.TrimSpace(head) != b {
		t.Errorf("HEAD = %q, %v; want %s", head, err, b)
	}
}
