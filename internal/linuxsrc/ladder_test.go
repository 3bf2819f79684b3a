package linuxsrc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kernelDir writes a minimal kernel-like tree of the given version.
func kernelDir(t *testing.T, dir, version string) {
	t.Helper()
	parts := strings.SplitN(version, ".", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	files := map[string]string{
		"Makefile":              "VERSION = " + parts[0] + "\nPATCHLEVEL = " + parts[1] + "\nSUBLEVEL = " + parts[2] + "\nEXTRAVERSION =\n",
		"arch/x86/Kconfig":      "config X86\n",
		"net/ipv4/esp4.c":       "/* esp4 of " + version + " */\n",
		"scripts/checkpatch.pl": "#!/usr/bin/perl\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".pl") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestLadder(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	// A tarball (6.1.99), a plain directory (3.0), and a git repository
	// whose first commit is 2.6.35 and whose HEAD is a vendor's 4.4.
	tarball := filepath.Join(base, "linux-source-6.1.tar")
	writeTar(t, tarball)
	plain := filepath.Join(base, "trees", "linux-3.0")
	kernelDir(t, plain, "3.0")
	repo := filepath.Join(base, "trees", "vendor")
	kernelDir(t, repo, "2.6.35")
	git(t, repo, "init", "-q")
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-qm", "import 2.6.35")
	first := git(t, repo, "rev-parse", "HEAD")
	kernelDir(t, repo, "4.4")
	git(t, repo, "commit", "-qam", "vendor 4.4")

	out := filepath.Join(base, "ladder.git")
	rungs, err := Ladder(ctx, []string{tarball, filepath.Join(base, "trees"), repo + "@" + first}, out, LadderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, r := range rungs {
		versions = append(versions, r.Version)
	}
	if got, want := strings.Join(versions, " "), "2.6.35 3.0 4.4 6.1.99"; got != want {
		t.Fatalf("rungs %s, want %s", got, want)
	}
	// One commit per release, oldest first, each tagged, master at the top.
	log := git(t, out, "log", "--format=%s", "master")
	if want := "Linux 6.1.99\nLinux 4.4\nLinux 3.0\nLinux 2.6.35"; log != want {
		t.Errorf("history:\n%s\nwant:\n%s", log, want)
	}
	for _, r := range rungs {
		if got := git(t, out, "rev-parse", "v"+r.Version); got != r.Commit {
			t.Errorf("tag v%s = %s, want %s", r.Version, got, r.Commit)
		}
		if got := git(t, out, "rev-parse", r.Commit+"^{tree}"); got != r.Tree {
			t.Errorf("%s: tree %s, want %s", r.Version, got, r.Tree)
		}
	}
	if got := git(t, out, "show", "v2.6.35:net/ipv4/esp4.c"); got != "/* esp4 of 2.6.35 */" {
		t.Errorf("2.6.35's esp4.c: %q", got)
	}
	if got := git(t, out, "ls-tree", "v3.0", "scripts/checkpatch.pl"); !strings.HasPrefix(got, "100755") {
		t.Errorf("executable bit lost: %q", got)
	}
	if got := git(t, out, "for-each-ref", "--format=%(refname)", "refs/kbisect-import/"); got != "" {
		t.Errorf("import refs left behind: %s", got)
	}
	// The same trees make the same history.
	out2 := filepath.Join(base, "again.git")
	rungs2, err := Ladder(ctx, []string{repo + "@" + first, filepath.Join(base, "trees"), tarball}, out2, LadderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rungs2[3].Commit != rungs[3].Commit {
		t.Errorf("not reproducible: %s then %s", rungs[3].Commit, rungs2[3].Commit)
	}

	for _, tc := range []struct {
		name    string
		sources []string
		out     string
		want    string
	}{
		{"exists", []string{tarball}, out, "already exists"},
		{"duplicate", []string{plain, plain + "/../linux-3.0"}, filepath.Join(base, "dup.git"), "both Linux 3.0"},
		{"not a tree", []string{t.TempDir()}, filepath.Join(base, "none.git"), "holds no kernel tarball"},
		{"bad rev", []string{repo + "@v9.9"}, filepath.Join(base, "rev.git"), "no commit \"v9.9\""},
		{"none", nil, filepath.Join(base, "empty.git"), "no kernel trees given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Ladder(ctx, tc.sources, tc.out, LadderOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if tc.out != out {
				if _, err := os.Stat(tc.out); err == nil {
					t.Errorf("%s was created", tc.out)
				}
			}
		})
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary directory left: %s", e.Name())
		}
	}
}

func TestVersionLess(t *testing.T) {
	ordered := []string{"2.6.32", "2.6.32.2", "2.6.35", "3.0-rc1", "3.0", "3.2.71", "3.14.5", "3.18", "4.4", "6.1.99"}
	for i := range ordered {
		for j := range ordered {
			if got := versionLess(ordered[i], ordered[j]); got != (i < j) {
				t.Errorf("versionLess(%s, %s) = %v", ordered[i], ordered[j], got)
			}
		}
	}
}

// TestLadderMissingBlobs: a snapshot that lacks some blobs (the fetch tool
// leaves out files of 4 MiB and more) still makes a rung, without them.
func TestLadderMissingBlobs(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	repo := filepath.Join(base, "snap")
	kernelDir(t, repo, "4.14.5")
	big := filepath.Join(repo, "drivers/gpu/drm/amd/include/asic_reg/huge.h")
	os.MkdirAll(filepath.Dir(big), 0o755)
	os.WriteFile(big, []byte("#define HUGE 1\n"), 0o644)
	os.Symlink("../../scripts/checkpatch.pl", filepath.Join(repo, "net/link.pl"))
	git(t, repo, "init", "-q")
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-qm", "import")
	blob := git(t, repo, "rev-parse", "HEAD:drivers/gpu/drm/amd/include/asic_reg/huge.h")
	if err := os.Remove(filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	out := filepath.Join(base, "ladder.git")
	rungs, err := Ladder(ctx, []string{repo + "@HEAD"}, out, LadderOptions{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if len(rungs) != 1 || rungs[0].Version != "4.14.5" {
		t.Fatalf("rungs %+v", rungs)
	}
	if !strings.Contains(log.String(), "lacks 1 file(s), left out: drivers/gpu/drm/amd/include/asic_reg/huge.h") {
		t.Errorf("log does not name the missing file:\n%s", log.String())
	}
	tree := git(t, out, "ls-tree", "-r", "--name-only", "v4.14.5")
	if strings.Contains(tree, "huge.h") || !strings.Contains(tree, "net/ipv4/esp4.c") || !strings.Contains(tree, "net/link.pl") {
		t.Errorf("tree:\n%s", tree)
	}
	if got := git(t, out, "ls-tree", "v4.14.5", "scripts/checkpatch.pl"); !strings.HasPrefix(got, "100755") {
		t.Errorf("executable bit lost: %q", got)
	}
	if got := git(t, out, "ls-tree", "v4.14.5", "net/link.pl"); !strings.HasPrefix(got, "120000") {
		t.Errorf("symlink lost: %q", got)
	}
}

// TestMadeText: a line per release, then the repository and its range.
func TestMadeText(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Made
		want string
	}{
		{"two", Made{Repo: "/l.git", Rungs: []Rung{
			{Version: "2.6.32.2", Source: "linux-2.6.32.2.tar.xz", Commit: "0123456789abcdef0123"},
			{Version: "3.14.5", Source: "/src/linux@v3.14.5", Commit: "fedcba9876543210fedc"},
		}}, "v2.6.32.2     0123456789ab  linux-2.6.32.2.tar.xz\n" +
			"v3.14.5       fedcba987654  /src/linux@v3.14.5\n" +
			"wrote /l.git: 2 releases, v2.6.32.2 .. v3.14.5\n"},
		{"none", Made{Repo: "/l.git"}, "wrote /l.git: no releases\n"},
	} {
		var b strings.Builder
		tc.m.WriteText(&b)
		if b.String() != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, b.String(), tc.want)
		}
	}
}
