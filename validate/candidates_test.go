package validate

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

func gitC(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCandidates splits the difference of two releases into candidates,
// per file and per directory, and checks that each applies on --from with
// git am and brings --to's version of exactly its files.
func TestCandidates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	os.MkdirAll(dir, 0o755)
	gitC(t, dir, "init", "-q", "-b", "main")
	write := func(files map[string]string) {
		for name, body := range files {
			p := filepath.Join(dir, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if body == "" {
				os.Remove(p)
				continue
			}
			os.WriteFile(p, []byte(body), 0o644)
		}
		gitC(t, dir, "add", "-A")
	}
	long := func(a, b string) string {
		var sb strings.Builder
		sb.WriteString(a + "\n")
		for i := 0; i < 20; i++ {
			fmt.Fprintf(&sb, "line %d\n", i)
		}
		return sb.String() + b + "\n"
	}
	write(map[string]string{"arch/x86/kernel/i387.c": long("old begin", "old end"), "arch/x86/xen/enlighten.c": "old xen\n", "net/ipv4/esp4.c": "esp\n", "arch/x86/crypto/Makefile": "obj-y += aes.o\n"})
	gitC(t, dir, "commit", "-qm", "Linux 3.19")
	gitC(t, dir, "tag", "v3.19")
	write(map[string]string{"arch/x86/kernel/i387.c": long("new begin", "new end"), "arch/x86/xen/enlighten.c": "new xen\n", "arch/x86/crypto/Makefile": "obj-y += aes.o sha1.o\n", "arch/x86/crypto/sha1.c": "sha1\n"})
	gitC(t, dir, "commit", "-qm", "Linux 4.0")
	gitC(t, dir, "tag", "v4.0")
	repo, err := gitrepo.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		o      CandidateOptions
		groups string
	}{
		{"per file", CandidateOptions{From: "v3.19", To: "v4.0", Paths: []string{"arch/x86"}},
			"arch/x86/crypto/Makefile arch/x86/crypto/sha1.c arch/x86/kernel/i387.c arch/x86/xen/enlighten.c"},
		{"per directory", CandidateOptions{From: "v3.19", To: "v4.0", By: "dir"},
			"arch/x86/crypto arch/x86/kernel arch/x86/xen"},
		{"reverts", CandidateOptions{From: "v4.0", To: "v3.19", By: "dir", Paths: []string{"arch/x86/crypto"}},
			"arch/x86/crypto"},
		{"per hunk", CandidateOptions{From: "v3.19", To: "v4.0", By: "hunk", Paths: []string{"arch/x86/kernel"}},
			"arch/x86/kernel/i387.c#1 arch/x86/kernel/i387.c#2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Dir = filepath.Join(t.TempDir(), "cands")
			cands, err := Candidates(context.Background(), repo, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			var groups []string
			for _, c := range cands {
				groups = append(groups, c.Group)
				// Each applies on From and gives To's version of its files.
				wt := filepath.Join(t.TempDir(), "wt")
				gitC(t, dir, "worktree", "add", "-q", "--detach", wt, tc.o.From)
				gitC(t, wt, "am", "-q", c.Patch)
				for _, f := range c.Files {
					want, _ := exec.Command("git", "-C", dir, "show", tc.o.To+":"+f).Output()
					got, _ := os.ReadFile(filepath.Join(wt, f))
					switch {
					case tc.o.By == "hunk" && strings.HasSuffix(c.Group, "#1"):
						// The first hunk alone: the new beginning, the old end.
						if !strings.HasPrefix(string(got), "new begin\n") || !strings.HasSuffix(string(got), "old end\n") {
							t.Errorf("%s: %s is %q after the first hunk alone", c.Group, f, got)
						}
					case tc.o.By == "hunk":
						if !strings.HasPrefix(string(got), "old begin\n") || !strings.HasSuffix(string(got), "new end\n") {
							t.Errorf("%s: %s is %q after the second hunk alone", c.Group, f, got)
						}
					case string(got) != string(want):
						t.Errorf("%s: %s is %q after the candidate, want %q", c.Group, f, got, want)
					}
				}
				gitC(t, dir, "worktree", "remove", "--force", wt)
			}
			if got := strings.Join(groups, " "); got != tc.groups {
				t.Errorf("groups %q, want %q", got, tc.groups)
			}
		})
	}
	if _, err := Candidates(context.Background(), repo, CandidateOptions{From: "v3.19", To: "v4.0", Paths: []string{"net"}, Dir: filepath.Join(t.TempDir(), "c")}); err == nil || !strings.Contains(err.Error(), "do not differ in net") {
		t.Errorf("no difference: %v", err)
	}
}

// TestWriteCandidates: a line per candidate, and Candidates refuses
// options without both commits and the directory before touching the
// repository.
func TestWriteCandidates(t *testing.T) {
	var b strings.Builder
	WriteCandidates(&b, []Candidate{
		{Group: "arch/x86/kernel", Files: []string{"a.c", "b.c"}, Added: 3, Deleted: 1, Patch: "/c/0001-arch-x86-kernel.patch"},
		{Group: "net/ipv4/esp4.c", Files: []string{"net/ipv4/esp4.c"}, Added: 0, Deleted: 7, Patch: "/c/0002-net-ipv4-esp4.c.patch"},
	})
	want := "arch/x86/kernel  +3 -1  2 file(s)  /c/0001-arch-x86-kernel.patch\n" +
		"net/ipv4/esp4.c  +0 -7  1 file(s)  /c/0002-net-ipv4-esp4.c.patch\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	for _, o := range []CandidateOptions{{To: "b", Dir: "d"}, {From: "a", Dir: "d"}, {From: "a", To: "b"}} {
		if _, err := Candidates(context.Background(), nil, o); err == nil || err.Error() != "give --from, --to and -o DIR" {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
