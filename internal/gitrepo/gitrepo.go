// Package gitrepo runs the few git operations kbisect needs on a user's
// repository without ever changing it: it only reads from it, and checks
// commits out in kbisect's own clones (objects shared through alternates),
// never in the user's worktree and never through `git worktree add`, which
// would write to the user's .git.
package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Short abbreviates a commit hash to the 12 digits kbisect prints (as
// git's --abbrev=12); anything shorter is returned as it is.
func Short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// Repo is a git repository kbisect reads from.
type Repo struct {
	// Dir is the repository's top directory (or the git dir of a bare one).
	Dir string
}

// Open checks that dir is a git repository and returns it.
func Open(ctx context.Context, dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", dir, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("repository %s does not exist: give --repo the path of a kernel git tree", dir)
	}
	out, err := git(ctx, abs, "rev-parse", "--absolute-git-dir")
	var ge *Error
	if errors.As(err, &ge) && strings.Contains(ge.Stderr, "dubious ownership") {
		owner := "another user"
		if st, serr := os.Stat(abs); serr == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				owner = fmt.Sprintf("user %d", sys.Uid)
				if u, uerr := user.LookupId(strconv.Itoa(int(sys.Uid))); uerr == nil {
					owner = u.Username
				}
			}
		}
		return nil, fmt.Errorf("%s belongs to %s and git refuses it (safe.directory): run kbisect as its owner, or trust it with `git config --global --add safe.directory %s`", dir, owner, abs)
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not a git repository: give --repo the path of a kernel git tree", dir)
	}
	gitDir := strings.TrimSpace(out)
	top, err := git(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil || strings.TrimSpace(top) == "" {
		return &Repo{Dir: gitDir}, nil // bare
	}
	return &Repo{Dir: strings.TrimSpace(top)}, nil
}

// Git runs git in the repository and returns its standard output.
func (r *Repo) Git(ctx context.Context, args ...string) (string, error) {
	return git(ctx, r.Dir, args...)
}

// Resolve returns the full commit hash of rev.
func (r *Repo) Resolve(ctx context.Context, rev string) (string, error) {
	out, err := git(ctx, r.Dir, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil || strings.TrimSpace(out) == "" {
		return "", fmt.Errorf("unknown revision %q in %s: give a commit, tag or branch that `git rev-parse` knows", rev, r.Dir)
	}
	return strings.TrimSpace(out), nil
}

// IsAncestor reports whether commit a is an ancestor of (or equal to) b.
func (r *Repo) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	_, err := git(ctx, r.Dir, "merge-base", "--is-ancestor", a, b)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("is %s an ancestor of %s in %s: %w", a, b, r.Dir, err)
	}
}

// Range returns the commits reachable from bad but not from good, oldest
// first (topological order), bad last.
func (r *Repo) Range(ctx context.Context, good, bad string) ([]string, error) {
	out, err := git(ctx, r.Dir, "rev-list", "--topo-order", "--reverse", bad, "^"+good)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Refs returns the short names of the refs that match patterns (as git
// for-each-ref takes them: refs/tags, refs/tags/v*), sorted by the key
// sortBy ("creatordate": oldest first; "": by name).
func (r *Repo) Refs(ctx context.Context, sortBy string, patterns ...string) ([]string, error) {
	args := []string{"for-each-ref", "--format=%(refname:short)"}
	if sortBy != "" {
		args = append(args, "--sort="+sortBy)
	}
	out, err := git(ctx, r.Dir, append(args, patterns...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Subject returns the one-line subject of commit.
func (r *Repo) Subject(ctx context.Context, commit string) (string, error) {
	out, err := git(ctx, r.Dir, "log", "-1", "--format=%s", commit)
	return strings.TrimSpace(out), err
}

// Parents returns the parents of commit.
func (r *Repo) Parents(ctx context.Context, commit string) ([]string, error) {
	out, err := git(ctx, r.Dir, "rev-list", "--parents", "-n", "1", commit)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return nil, fmt.Errorf("commit %s in %s: no such commit", commit, r.Dir)
	}
	return f[1:], nil
}

// Workspace is a checkout owned by kbisect: a clone of the user's repository
// that borrows its objects (git clone --shared), so it costs little disk and
// leaves the user's repository untouched.
type Workspace struct {
	Dir  string
	repo *Repo
}

// Workspace returns the kbisect-owned checkout at dir, creating it if needed.
// Concurrent users of one dir must serialise themselves (see kbuild's lock).
func (r *Repo) Workspace(ctx context.Context, dir string) (*Workspace, error) {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("workspace %s: %w", dir, err)
		}
		if _, err := git(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", r.Dir, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("workspace %s: %w", dir, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("workspace %s: %w", dir, err)
		}
	}
	return &Workspace{Dir: dir, repo: r}, nil
}

// Checkout makes the workspace's files exactly those of commit (fetching it
// from the user's repository if the clone predates it) and removes anything
// else, such as fixups applied for a previous build. A git index lock left
// by a kbisect stopped in the middle of a checkout is removed first: the
// workspace's users serialise themselves, so no git of theirs holds it.
func (w *Workspace) Checkout(ctx context.Context, commit string) error {
	if err := os.Remove(filepath.Join(w.Dir, ".git", "index.lock")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("workspace %s: stale index lock: %w", w.Dir, err)
	}
	if _, err := git(ctx, w.Dir, "cat-file", "-e", commit+"^{commit}"); err != nil {
		if _, err := git(ctx, w.Dir, "fetch", "--quiet", "--no-tags", w.repo.Dir, commit); err != nil {
			return fmt.Errorf("fetch %s into workspace %s: %w", commit, w.Dir, err)
		}
	}
	if _, err := git(ctx, w.Dir, "checkout", "--quiet", "--force", "--detach", commit); err != nil {
		return fmt.Errorf("checkout %s in workspace %s: %w", commit, w.Dir, err)
	}
	if _, err := git(ctx, w.Dir, "clean", "--quiet", "-fdx"); err != nil {
		return fmt.Errorf("clean workspace %s: %w", w.Dir, err)
	}
	return nil
}

// Git runs git in the workspace.
func (w *Workspace) Git(ctx context.Context, args ...string) (string, error) {
	return git(ctx, w.Dir, args...)
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	return Run(ctx, Cmd{Dir: dir}, args...)
}

// Cmd says where and how Run runs git.
type Cmd struct {
	// Dir is passed as `git -C Dir` when set.
	Dir string
	// Env is added to the cleaned environment (see Run).
	Env []string
	// Stdin, when not nil, is git's standard input.
	Stdin []byte
}

// Error is a failed git command with its standard error.
type Error struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Sprintf("git %s: %s: %v", strings.Join(e.Args, " "), msg, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs git with args and returns its standard output; a failure is an
// *Error carrying git's standard error. The variables that could point git
// at another repository, worktree or index (a user's GIT_DIR, say), and the
// author and committer identities, are dropped from the environment first,
// so only c.Env chooses them; prompts are disabled.
func Run(ctx context.Context, c Cmd, args ...string) (string, error) {
	full := args
	if c.Dir != "" {
		full = append([]string{"-C", c.Dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Env = append(Env(), c.Env...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Args: full, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// Env is the environment Run gives git (without any Cmd.Env), for callers
// that must start git themselves, such as a streaming `git fast-import`.
func Env() []string {
	return append(withoutGitVars(os.Environ()), "GIT_TERMINAL_PROMPT=0")
}

// RepoVars are the variables git calls local to a repository (`git
// rev-parse --local-env-vars`): set by a hook, an alias or the user, they
// point git at another repository, worktree, index or object store, or
// carry config.
var RepoVars = []string{
	"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
	"GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE",
	"GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_PREFIX",
	"GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE", "GIT_COMMON_DIR",
}

// WithoutRepoVars returns env without RepoVars but the config given with
// `git -c` or GIT_CONFIG_COUNT (a safe.directory, say), as git does when
// it runs a command in another repository (a submodule): the environment
// of a command that must see the repository it runs in, such as a test
// command in a checkout.
func WithoutRepoVars(env []string) []string {
	var drop []string
	for _, v := range RepoVars {
		if v != "GIT_CONFIG_PARAMETERS" && v != "GIT_CONFIG_COUNT" {
			drop = append(drop, v)
		}
	}
	return without(env, drop)
}

// withoutGitVars is WithoutRepoVars without the identities git would
// commit with either.
func withoutGitVars(env []string) []string {
	return without(WithoutRepoVars(env), []string{
		"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
		"GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE",
	})
}

func without(env, names []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			out = append(out, kv)
		}
	}
	return out
}
