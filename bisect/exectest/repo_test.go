package exectest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// makeRepo creates a git repository of n linear commits (git fast-import),
// each changing file "n" but commit culprit (1-based), which adds a file
// "bug" (so reverting it applies cleanly). It returns the directory and the
// hashes, oldest first.
func makeRepo(t testing.TB, n, culprit int) (string, []string) {
	t.Helper()
	return makeHistory(t, n, culprit, false)
}

// makeFixRepo is makeRepo for a fix: the file "bug" is there from the
// first commit and commit fix (1-based) removes it.
func makeFixRepo(t testing.TB, n, fix int) (string, []string) {
	t.Helper()
	return makeHistory(t, n, fix, true)
}

func makeHistory(t testing.TB, n, culprit int, fix bool) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	gitT(t, "", "init", "-q", "-b", "main", dir)
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf("commit %d\n", i)
		fmt.Fprintf(&b, "commit refs/heads/main\nmark :%d\ncommitter T <t@example.com> %d +0000\ndata %d\n%s", i, 1700000000+i, len(msg), msg)
		if i > 1 {
			fmt.Fprintf(&b, "from :%d\n", i-1)
		}
		switch {
		case fix && i == 1:
			b.WriteString("M 644 inline bug\ndata 2\n1\n")
		case fix && i == culprit:
			b.WriteString("D bug\n")
		case !fix && i == culprit:
			b.WriteString("M 644 inline bug\ndata 2\n1\n")
		default:
			d := fmt.Sprintf("%d\n", i)
			fmt.Fprintf(&b, "M 644 inline n\ndata %d\n%s", len(d), d)
		}
		b.WriteString("\n")
	}
	cmd := exec.Command("git", "-C", dir, "fast-import", "--quiet")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fast-import: %v: %s", err, out)
	}
	gitT(t, dir, "checkout", "-q", "main")
	hashes := strings.Fields(gitT(t, dir, "rev-list", "--reverse", "main"))
	if len(hashes) != n {
		t.Fatalf("made %d commits, want %d", len(hashes), n)
	}
	return dir, hashes
}

func gitT(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// repoState is everything of a user's repository kbisect must not change.
type repoState struct {
	head, symref, refs, status, bisect string
	indexMtime                         int64
}

func snapshot(t *testing.T, dir string) repoState {
	t.Helper()
	var s repoState
	s.head = gitT(t, dir, "rev-parse", "HEAD")
	b, err := os.ReadFile(filepath.Join(dir, ".git", "HEAD"))
	if err != nil {
		t.Fatal(err)
	}
	s.symref = string(b)
	s.refs = gitT(t, dir, "for-each-ref")
	// --no-optional-locks: do not let our own check refresh the index.
	s.status = gitT(t, dir, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all")
	st, err := os.Stat(filepath.Join(dir, ".git", "index"))
	if err != nil {
		t.Fatal(err)
	}
	s.indexMtime = st.ModTime().UnixNano()
	files, _ := filepath.Glob(filepath.Join(dir, ".git", "BISECT_*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		st, _ := os.Stat(f)
		s.bisect += fmt.Sprintf("%s %d %q\n", filepath.Base(f), st.ModTime().UnixNano(), b)
	}
	return s
}

func openRepo(t *testing.T, dir string) *gitrepo.Repo {
	t.Helper()
	r, err := gitrepo.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
