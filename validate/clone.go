package validate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Clone is kbisect's own clone of a user's repository, where patch series
// are applied: a `git clone --shared` (objects borrowed from the user's
// repository, which is only read), one per user repository so that its
// kernel build slot, and so incremental builds, carry over between runs. A
// Clone is locked for one process at a time.
type Clone struct {
	// Dir is the clone's top directory.
	Dir  string
	user *gitrepo.Repo
	lock *os.File
}

// Committer identity and date of the commits made from patches: fixed, so
// the same series on the same base gives the same commits on every run.
var committerEnv = []string{
	"GIT_COMMITTER_NAME=kbisect validate",
	"GIT_COMMITTER_EMAIL=validate@kbisect.invalid",
	"GIT_COMMITTER_DATE=1420070400 +0000",
}

// OpenClone returns the clone of user under cacheRoot/validate, creating
// it if needed, and locks it; it waits while another process holds it.
// Close releases it.
func OpenClone(ctx context.Context, user *gitrepo.Repo, cacheRoot string, log io.Writer) (*Clone, error) {
	name := strings.TrimSuffix(filepath.Base(user.Dir), ".git")
	sum := sha256.Sum256([]byte(user.Dir))
	top := filepath.Join(cacheRoot, "validate", name+"-"+hex.EncodeToString(sum[:])[:12])
	if err := os.MkdirAll(top, 0o755); err != nil {
		return nil, fmt.Errorf("validate workspace %s: %w", top, err)
	}
	lock, err := lockFile(ctx, filepath.Join(top, "lock"), log)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(top, name+"-validate")
	if _, err := user.Workspace(ctx, dir); err != nil {
		lock.Close()
		return nil, err
	}
	c := &Clone{Dir: dir, user: user, lock: lock}
	// Commits made from patches are reachable from no ref: never prune them.
	if _, err := runGit(ctx, dir, nil, nil, "config", "gc.auto", "0"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.flattenAlternates(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close unlocks the clone.
func (c *Clone) Close() {
	if c.lock != nil {
		syscall.Flock(int(c.lock.Fd()), syscall.LOCK_UN)
		c.lock.Close()
		c.lock = nil
	}
}

// lockFile takes an exclusive lock on path, waiting for it.
func lockFile(ctx context.Context, path string, log io.Writer) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			f.Truncate(0)
			f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said && log != nil {
			pid, _ := os.ReadFile(path)
			fmt.Fprintf(log, "validate: another kbisect validate (process %s) uses this repository's workspace; waiting\n", strings.TrimSpace(string(pid)))
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the validate workspace lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// flattenAlternates adds the user's own alternates to the clone's, so that
// clones of the clone (kbuild's checkouts) stay within git's limit on
// nested alternates.
func (c *Clone) flattenAlternates() error {
	gitDir, err := runGit(context.Background(), c.user.Dir, nil, nil, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return err
	}
	userObjects := filepath.Join(strings.TrimSpace(gitDir), "objects")
	theirs, err := os.ReadFile(filepath.Join(userObjects, "info", "alternates"))
	if err != nil {
		return nil // none
	}
	mineFile := filepath.Join(c.Dir, ".git", "objects", "info", "alternates")
	mine, _ := os.ReadFile(mineFile)
	have := map[string]bool{}
	for _, l := range strings.Split(string(mine), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var add []string
	for _, l := range strings.Split(string(theirs), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !filepath.IsAbs(l) {
			l = filepath.Clean(filepath.Join(userObjects, l))
		}
		if !have[l] {
			add = append(add, l)
			have[l] = true
		}
	}
	if len(add) == 0 {
		return nil
	}
	out := strings.TrimRight(string(mine), "\n") + "\n" + strings.Join(add, "\n") + "\n"
	return os.WriteFile(mineFile, []byte(strings.TrimLeft(out, "\n")), 0o644)
}

// ApplyError says that a patch of the series does not apply.
type ApplyError struct {
	// Index is the patch's position in the series (0-based).
	Index int
	Patch *Patch
	// File is the first file that failed ("" when git named none).
	File string
	// Detail is git's message.
	Detail string
}

func (e *ApplyError) Error() string {
	where := ""
	if e.File != "" {
		where = " to " + e.File
	}
	return fmt.Sprintf("patch %d (%s: %s) does not apply%s: %s", e.Index+1, e.Patch.Name, e.Patch.Subject, where, e.Detail)
}

// Apply makes one commit per patch on top of base in the clone, as git am
// would (mailinfo, then apply to the index), with a fixed committer so the
// same series gives the same commits every time. Nothing is checked out:
// the patches are applied to a private index. It returns the commits made;
// when a patch does not apply they are those before it and the error is an
// *ApplyError.
func (c *Clone) Apply(ctx context.Context, base string, series []*Patch, tmp string) ([]string, error) {
	if err := c.ensureCommit(ctx, base); err != nil {
		return nil, err
	}
	index := filepath.Join(tmp, "apply-index")
	os.Remove(index)
	defer os.Remove(index)
	env := []string{"GIT_INDEX_FILE=" + index}
	if _, err := runGit(ctx, c.Dir, env, nil, "read-tree", base); err != nil {
		return nil, fmt.Errorf("read base %s into the validate index: %w", base, err)
	}
	var commits []string
	parent := base
	for i, p := range series {
		if fi, err := os.Stat(p.diff); err != nil || fi.Size() == 0 {
			return commits, &ApplyError{Index: i, Patch: p, Detail: "the patch is empty (no diff in the mail)"}
		}
		if _, err := runGit(ctx, c.Dir, env, nil, "apply", "--cached", p.diff); err != nil {
			file, detail := applyFailure(err)
			return commits, &ApplyError{Index: i, Patch: p, File: file, Detail: detail}
		}
		tree, err := runGit(ctx, c.Dir, env, nil, "write-tree")
		if err != nil {
			return commits, err
		}
		msg := p.Subject
		if p.message != "" {
			msg += "\n\n" + p.message
		}
		cenv := append([]string{}, committerEnv...)
		author, email, date := p.author, p.email, p.date
		if author == "" {
			author = "unknown"
		}
		if email == "" {
			email = "unknown@kbisect.invalid"
		}
		if date == "" {
			date = "1420070400 +0000"
		}
		cenv = append(cenv, "GIT_AUTHOR_NAME="+author, "GIT_AUTHOR_EMAIL="+email, "GIT_AUTHOR_DATE="+date)
		out, err := runGit(ctx, c.Dir, cenv, []byte(msg+"\n"), "commit-tree", strings.TrimSpace(tree), "-p", parent)
		if err != nil {
			return commits, fmt.Errorf("commit patch %s: %w", p.Name, err)
		}
		parent = strings.TrimSpace(out)
		commits = append(commits, parent)
	}
	return commits, nil
}

// ensureCommit fetches commit from the user's repository into the clone if
// the clone cannot see it (a clone older than the commit).
func (c *Clone) ensureCommit(ctx context.Context, commit string) error {
	if _, err := runGit(ctx, c.Dir, nil, nil, "cat-file", "-e", commit+"^{commit}"); err == nil {
		return nil
	}
	if _, err := runGit(ctx, c.Dir, nil, nil, "fetch", "--quiet", "--no-tags", c.user.Dir, commit); err != nil {
		return fmt.Errorf("fetch %s into the validate workspace %s: %w", commit, c.Dir, err)
	}
	return nil
}

var (
	applyFailed   = regexp.MustCompile(`(?m)^error: patch failed: (.+):(\d+)$`)
	applyFileProb = regexp.MustCompile(`(?m)^error: (.+?): (does not exist in index|already exists in index|patch does not apply|No such file or directory|does not match index|wrong type)$`)
	applyAny      = regexp.MustCompile(`(?m)^(?:error|fatal): (.+)$`)
)

// applyFailure picks the failing file and git's reason out of git apply's
// error output.
func applyFailure(err error) (file, detail string) {
	var ge *gitrepo.Error
	msg := err.Error()
	if errors.As(err, &ge) {
		msg = ge.Stderr
	}
	if m := applyFailed.FindStringSubmatch(msg); m != nil {
		return m[1], fmt.Sprintf("the hunk at line %s does not match", m[2])
	}
	if m := applyFileProb.FindStringSubmatch(msg); m != nil {
		return m[1], m[1] + " " + m[2]
	}
	if m := applyAny.FindStringSubmatch(msg); m != nil {
		return "", m[1]
	}
	return "", strings.TrimSpace(msg)
}

// runGit runs git in dir (if set) with extra environment and standard
// input; see gitrepo.Run.
func runGit(ctx context.Context, dir string, env []string, stdin []byte, args ...string) (string, error) {
	return gitrepo.Run(ctx, gitrepo.Cmd{Dir: dir, Env: env, Stdin: stdin}, args...)
}
