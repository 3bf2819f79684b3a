package linuxsrc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Rung is one release of a ladder repository.
type Rung struct {
	// Version is the tree's version from its top Makefile ("3.2.71").
	Version string `json:"version"`
	// Source is where the tree came from (a tarball, a directory or
	// repo@commit).
	Source string `json:"source"`
	// Commit is the rung's commit in the ladder repository; Tree its tree.
	Commit string `json:"commit"`
	Tree   string `json:"tree"`
}

// Made is a ladder as Ladder made it: the new repository and its
// releases, oldest first.
type Made struct {
	Repo  string `json:"repo"`
	Rungs []Rung `json:"rungs"`
}

// WriteText writes a line per release (version, commit, source), then the
// repository and its range.
func (m *Made) WriteText(w io.Writer) {
	for _, r := range m.Rungs {
		fmt.Fprintf(w, "v%-12s %s  %s\n", r.Version, gitrepo.Short(r.Commit), r.Source)
	}
	if len(m.Rungs) == 0 {
		fmt.Fprintf(w, "wrote %s: no releases\n", m.Repo)
		return
	}
	fmt.Fprintf(w, "wrote %s: %d releases, v%s .. v%s\n", m.Repo, len(m.Rungs), m.Rungs[0].Version, m.Rungs[len(m.Rungs)-1].Version)
}

// LadderOptions tune Ladder.
type LadderOptions struct {
	// Log, if set, receives one line per imported tree.
	Log io.Writer
}

// Ladder makes a bare git repository at out whose history is the kernel
// trees of sources in version order, one commit per tree, each tagged
// v<version> (v2.6.32.2, v3.14.5, ...), master at the newest: a history a
// bisection can run over when the real one is not at hand (release
// snapshots, vendor tarballs). A source is a source tarball (.tar, .tar.gz,
// .tar.xz), a directory holding a kernel tree, a git repository (its HEAD,
// or path@rev), or a directory of such sources. out must not exist; it
// appears whole or not at all.
func Ladder(ctx context.Context, sources []string, out string, o LadderOptions) ([]Rung, error) {
	if len(sources) == 0 {
		return nil, errors.New("ladder: no kernel trees given: name tarballs, tree directories, git repositories or a directory of them")
	}
	if _, err := os.Stat(out); err == nil {
		return nil, fmt.Errorf("ladder: %s already exists: give a new path with -o", out)
	}
	srcs, err := expandSources(ctx, sources)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("ladder: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := gitOut(ctx, "", "init", "--quiet", "--bare", tmp); err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{{"gc.auto", "0"}, {"core.compression", "1"}, {"pack.compression", "1"}} {
		if _, err := gitOut(ctx, tmp, "config", kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	var rungs []Rung
	for i, s := range srcs {
		start := time.Now()
		ref := fmt.Sprintf("refs/kbisect-import/%d", i)
		tree, version, err := s.importTo(ctx, tmp, ref, o.Log)
		if err != nil {
			return nil, fmt.Errorf("ladder: %s: %w", s, err)
		}
		if version == "" {
			return nil, fmt.Errorf("ladder: %s: no VERSION and PATCHLEVEL in its top Makefile: not a kernel tree", s)
		}
		for _, r := range rungs {
			if r.Version == version {
				return nil, fmt.Errorf("ladder: %s and %s are both Linux %s: keep one", r.Source, s, version)
			}
		}
		rungs = append(rungs, Rung{Version: version, Source: s.String(), Tree: tree})
		if o.Log != nil {
			fmt.Fprintf(o.Log, "ladder: %s is Linux %s (%s)\n", s, version, time.Since(start).Round(time.Second))
		}
	}
	sort.SliceStable(rungs, func(i, j int) bool { return versionLess(rungs[i].Version, rungs[j].Version) })
	prev := ""
	for i := range rungs {
		r := &rungs[i]
		msg := fmt.Sprintf("Linux %s\n\nImported by kbisect ladder from %s.\n", r.Version, r.Source)
		args := []string{"commit-tree", r.Tree, "-m", msg}
		if prev != "" {
			args = append(args, "-p", prev)
		}
		// Fixed identity and dates, one day apart: the same trees make the
		// same history on every machine.
		when := fmt.Sprintf("%d +0000", 1000000000+86400*i)
		c, err := gitrepo.Run(ctx, gitrepo.Cmd{Dir: tmp, Env: []string{
			"GIT_AUTHOR_NAME=kbisect ladder", "GIT_AUTHOR_EMAIL=kbisect@localhost", "GIT_AUTHOR_DATE=" + when,
			"GIT_COMMITTER_NAME=kbisect ladder", "GIT_COMMITTER_EMAIL=kbisect@localhost", "GIT_COMMITTER_DATE=" + when,
		}}, args...)
		if err != nil {
			return nil, err
		}
		r.Commit = strings.TrimSpace(c)
		prev = r.Commit
		if _, err := gitOut(ctx, tmp, "tag", "v"+r.Version, r.Commit); err != nil {
			return nil, err
		}
	}
	if _, err := gitOut(ctx, tmp, "update-ref", "refs/heads/"+Branch, prev); err != nil {
		return nil, err
	}
	if _, err := gitOut(ctx, tmp, "symbolic-ref", "HEAD", "refs/heads/"+Branch); err != nil {
		return nil, err
	}
	for i := range srcs {
		gitOut(ctx, tmp, "update-ref", "-d", fmt.Sprintf("refs/kbisect-import/%d", i))
	}
	// Fetched snapshots come in shallow; the ladder keeps their trees only.
	os.Remove(filepath.Join(tmp, "shallow"))
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("ladder: %w", err)
	}
	return rungs, nil
}

// ladderSource is one tree to import.
type ladderSource struct {
	kind string // "tarball", "dir" or "git"
	path string
	rev  string // git only
}

func (s ladderSource) String() string {
	if s.kind == "git" {
		return s.path + "@" + s.rev
	}
	return s.path
}

// expandSources classifies each argument; a directory that is neither a
// kernel tree nor a git repository stands for the sources it holds.
func expandSources(ctx context.Context, args []string) ([]ladderSource, error) {
	var out []ladderSource
	for _, a := range args {
		s, ok, err := classify(ctx, a)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, fmt.Errorf("ladder: %s is not a kernel tarball, tree or git repository: %w", a, err)
		}
		n := len(out)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if s, ok, err := classify(ctx, filepath.Join(a, e.Name())); err != nil {
				return nil, err
			} else if ok {
				out = append(out, s)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("ladder: %s holds no kernel tarball, tree or git repository", a)
		}
	}
	return out, nil
}

// classify says what kind of source arg is; ok is false for a directory
// that is none of them.
func classify(ctx context.Context, arg string) (ladderSource, bool, error) {
	path, rev, hasRev := strings.Cut(arg, "@")
	st, err := os.Stat(path)
	if err != nil {
		return ladderSource{}, false, fmt.Errorf("ladder: %w", err)
	}
	if !st.IsDir() {
		for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.xz"} {
			if strings.HasSuffix(path, ext) {
				return ladderSource{kind: "tarball", path: path}, true, nil
			}
		}
		return ladderSource{}, false, fmt.Errorf("ladder: %s is not a directory or a .tar, .tar.gz or .tar.xz archive", path)
	}
	if _, err := os.Stat(filepath.Join(path, "Makefile")); err == nil && !hasRev {
		if _, err := os.Stat(filepath.Join(path, "arch")); err == nil {
			return ladderSource{kind: "dir", path: path}, true, nil
		}
	}
	if _, err := gitrepo.Run(ctx, gitrepo.Cmd{Dir: path}, "rev-parse", "--git-dir"); err == nil {
		if !hasRev {
			rev = "HEAD"
		}
		sha, err := gitrepo.Run(ctx, gitrepo.Cmd{Dir: path}, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
		if err != nil {
			return ladderSource{}, false, fmt.Errorf("ladder: %s: no commit %q", path, rev)
		}
		return ladderSource{kind: "git", path: path, rev: strings.TrimSpace(sha)}, true, nil
	}
	if hasRev {
		return ladderSource{}, false, fmt.Errorf("ladder: %s is not a git repository (drop @%s)", path, rev)
	}
	return ladderSource{}, false, nil
}

// importTo brings the source's tree into the repository dir under ref and
// returns its tree hash and kernel version.
func (s ladderSource) importTo(ctx context.Context, dir, ref string, log io.Writer) (tree, version string, err error) {
	switch s.kind {
	case "git":
		// The commit by its hash: a local upload-pack serves it once
		// allowed. No delta search and light compression: a 4.0 tree comes
		// over in 9 s instead of minutes (the -c settings reach the
		// upload-pack git runs for a local path).
		if _, err := gitrepo.Run(ctx, gitrepo.Cmd{Dir: dir}, "-c", "uploadpack.allowAnySHA1InWant=true", "-c", "pack.window=0",
			"-c", "pack.compression=1", "fetch", "--quiet", "--no-tags", "--depth=1", s.path, s.rev+":"+ref); err != nil {
			// A snapshot that lacks some blobs (large files left out)
			// cannot be fetched whole: copy its tree file by file, without
			// them, and say which.
			var missing []string
			ferr := fastImport(ctx, dir, func(w io.Writer) error {
				var err error
				missing, err = streamGit(ctx, s.path, s.rev, w, ref)
				return err
			})
			if ferr != nil {
				return "", "", fmt.Errorf("%w; copying it file by file: %w", err, ferr)
			}
			if len(missing) > 0 && log != nil {
				fmt.Fprintf(log, "ladder: %s lacks %d file(s), left out: %s\n", s, len(missing), strings.Join(missing, " "))
			}
		}
	case "tarball":
		decomp, err := decompressor(ctx, s.path)
		if err != nil {
			return "", "", err
		}
		err = fastImport(ctx, dir, func(w io.Writer) error {
			_, _, err := streamTar(decomp.r, w, ref, filepath.Base(s.path))
			return err
		})
		if werr := decomp.wait(); err == nil && werr != nil {
			err = werr
		}
		if err != nil {
			return "", "", err
		}
	case "dir":
		if err := fastImport(ctx, dir, func(w io.Writer) error { return streamDir(s.path, w, ref) }); err != nil {
			return "", "", err
		}
	}
	tree, err = gitOut(ctx, dir, "rev-parse", ref+"^{tree}")
	if err != nil {
		return "", "", err
	}
	mk, err := gitOut(ctx, dir, "cat-file", "blob", ref+":Makefile")
	if err != nil {
		return "", "", fmt.Errorf("no top Makefile: not a kernel tree")
	}
	return strings.TrimSpace(tree), makefileVersion([]byte(mk)), nil
}

// fastImport runs git fast-import in dir with the stream write produces.
func fastImport(ctx context.Context, dir string, write func(io.Writer) error) error {
	fi := exec.CommandContext(ctx, "git", append([]string{"-C", dir, "fast-import", "--quiet", "--done"}, fastImportArgs...)...)
	fi.Env = gitrepo.Env()
	var stderr strings.Builder
	fi.Stderr = &stderr
	stdin, err := fi.StdinPipe()
	if err != nil {
		return err
	}
	if err := fi.Start(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	werr := write(stdin)
	stdin.Close()
	err = fi.Wait()
	if werr != nil {
		return werr // what broke the stream, not fast-import's view of it
	}
	if err != nil {
		return fmt.Errorf("git fast-import: %s: %w", strings.TrimSpace(stderr.String()), err)
	}
	return nil
}

// streamDir writes a fast-import stream of the tree in root (without .git)
// as one commit on ref.
func streamDir(root string, w io.Writer, ref string) error {
	fw := newTreeWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if d.Name() == ".git" && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fw.symlink(rel, target)
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			err = fw.file(rel, info.Mode()&0o111 != 0, info.Size(), f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return fw.commit(ref, "Kernel source tree\n\nImported by kbisect from "+root+".\n")
}

// versionLess orders kernel versions numerically ("2.6.32.2" < "2.6.35" <
// "3.0" < "3.14.5"); a suffix such as "-rc3" sorts before the release.
func versionLess(a, b string) bool {
	na, ra := versionParts(a)
	nb, rb := versionParts(b)
	for i := 0; i < len(na) || i < len(nb); i++ {
		x, y := 0, 0
		if i < len(na) {
			x = na[i]
		}
		if i < len(nb) {
			y = nb[i]
		}
		if x != y {
			return x < y
		}
	}
	if (ra == "") != (rb == "") {
		return ra != ""
	}
	return ra < rb
}

func versionParts(v string) ([]int, string) {
	num, rest := v, ""
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		num, rest = v[:i], v[i:]
	}
	var out []int
	for _, p := range strings.Split(num, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			break
		}
		out = append(out, n)
	}
	return out, rest
}

// streamGit writes a fast-import stream of rev's tree in the git repository
// gitDir as one commit on ref, leaving out the blobs the repository lacks
// (snapshots omit large files), whose paths it returns.
func streamGit(ctx context.Context, gitDir, rev string, w io.Writer, ref string) (missing []string, err error) {
	ls, err := gitrepo.Run(ctx, gitrepo.Cmd{Dir: gitDir}, "ls-tree", "-r", "-z", "--full-tree", rev)
	if err != nil {
		return nil, err
	}
	type item struct{ mode, hash, path string }
	var items []item
	for _, rec := range strings.Split(ls, "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || f[1] != "blob" {
			continue // submodules (commit entries) have no content here
		}
		items = append(items, item{f[0], f[2], path})
	}
	cat := exec.CommandContext(ctx, "git", "-C", gitDir, "cat-file", "--batch")
	cat.Env = gitrepo.Env()
	in, err := cat.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cat.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cat.Start(); err != nil {
		return nil, err
	}
	defer cat.Wait()
	defer in.Close()
	go func() {
		for _, it := range items {
			fmt.Fprintln(in, it.hash)
		}
		in.Close()
	}()
	out := bufio.NewReaderSize(outPipe, 1<<20)
	tw := newTreeWriter(w)
	for _, it := range items {
		header, err := out.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		f := strings.Fields(header)
		if len(f) == 2 && f[1] == "missing" {
			missing = append(missing, it.path)
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("git cat-file: unexpected %q", header)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %q: %w", header, err)
		}
		switch it.mode {
		case "120000":
			target := make([]byte, size)
			if _, err := io.ReadFull(out, target); err != nil {
				return nil, err
			}
			tw.symlink(it.path, string(target))
		default:
			if err := tw.file(it.path, it.mode == "100755", size, out); err != nil {
				return nil, err
			}
		}
		if _, err := out.ReadByte(); err != nil { // the newline after each object
			return nil, err
		}
	}
	return missing, tw.commit(ref, "Kernel source tree\n\nImported by kbisect from "+gitDir+"@"+rev+".\n")
}
