package kbuild

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/linuxsrc"
	"github.com/kbisect/kbisect/kconfigs"
)

// The kernel tests share one fixture per `go test` run: a user repository
// cloned (--shared) from the linux-src repository with three commits on top
// of Linux 6.1, one build cache, one build slot, and a persistent ccache.
// Each kernel is built once and reused by the tests that need it:
//
//	A  the imported 6.1 tree
//	B  A + a changed printk string in net/ipv4/esp4.c (code change)
//	C  B + a changed comment in esp4.c, same line count (no code change)
//	D  B + a syntax error in esp4.c (branch "broken")
type fixture struct {
	repo      string // the user's repository
	cache     string // build cache root
	commits   map[string]string
	initrd    string
	before    string // the repository's state before any build
	mu        sync.Mutex
	artifacts map[string]*Artifact
	errs      map[string]error
}

var (
	fx        *fixture
	fxErr     error
	fxOnce    sync.Once
	fxCleanup []string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, d := range fxCleanup {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// kernelFixture returns the shared fixture, or skips when kernels cannot be
// built here.
func kernelFixture(t testing.TB) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Linux 6.1 (minutes); run without -short")
	}
	testenv.NeedLinuxSource(t)
	fxOnce.Do(func() { fx, fxErr = newFixture() })
	if fxErr != nil {
		t.Fatal(fxErr)
	}
	return fx
}

const esp4 = "net/ipv4/esp4.c"

func newFixture() (*fixture, error) {
	ctx := context.Background()
	src, err := linuxsrc.Repo(ctx)
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "kbuild-test-")
	if err != nil {
		return nil, err
	}
	fxCleanup = append(fxCleanup, root)
	f := &fixture{repo: filepath.Join(root, "linux"), cache: filepath.Join(root, "cache"), commits: map[string]string{},
		artifacts: map[string]*Artifact{}, errs: map[string]error{}}
	if out, err := exec.Command("git", "clone", "--quiet", "--shared", src, f.repo).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("clone: %v: %s", err, out)
	}
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", f.repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.org", "GIT_COMMITTER_NAME=Test",
			"GIT_COMMITTER_EMAIL=test@example.org", "GIT_AUTHOR_DATE=1700000100 +0000", "GIT_COMMITTER_DATE=1700000100 +0000")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	edit := func(old, new string) error {
		p := filepath.Join(f.repo, esp4)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), old) {
			return fmt.Errorf("%s lacks %q", esp4, old)
		}
		return os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644)
	}
	commit := func(name, msg string) error {
		if _, err := git("commit", "--quiet", "-a", "-m", msg); err != nil {
			return err
		}
		h, err := git("rev-parse", "HEAD")
		f.commits[name] = h
		return err
	}
	if f.commits["A"], err = git("rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return edit(`"%s: can't add xfrm type\n"`, `"%s: cannot add the xfrm type\n"`) },
		func() error { return commit("B", "esp4: reword a message") },
		func() error {
			return edit("/* skb is pure payload to encrypt */", "/* the skb holds only the payload to encrypt */")
		},
		func() error { return commit("C", "esp4: reword a comment") },
		func() error { _, err := git("checkout", "--quiet", "-b", "broken"); return err },
		func() error {
			return edit("static int esp4_err(struct sk_buff *skb, u32 info)\n{", "static int esp4_err(struct sk_buff *skb, u32 info)\n{\n\tbroken_by_kbisect_test")
		},
		func() error { return commit("D", "esp4: break the build") },
		func() error { _, err := git("checkout", "--quiet", "master"); return err },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if f.before, err = repoState(f.repo); err != nil {
		return nil, err
	}
	return f, nil
}

// repoState is everything of the user's repository that kbisect must not
// change: worktree status, HEAD, refs, the index file and the config.
func repoState(repo string) (string, error) {
	var b strings.Builder
	for _, args := range [][]string{
		{"status", "--porcelain", "--ignored", "--untracked-files=all"},
		{"rev-parse", "HEAD"},
		{"symbolic-ref", "HEAD"},
		{"for-each-ref", "--format=%(refname) %(objectname)"},
		{"stash", "list"},
		{"worktree", "list", "--porcelain"},
	} {
		out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %v: %v: %s", args, err, out)
		}
		fmt.Fprintf(&b, "$ git %s\n%s", strings.Join(args, " "), out)
	}
	for _, f := range []string{"index", "config", "HEAD", "packed-refs"} {
		data, _ := os.ReadFile(filepath.Join(repo, ".git", f))
		fmt.Fprintf(&b, "%s %x\n", f, sha256.Sum256(data))
	}
	return b.String(), nil
}

// bootInitrd returns the test /init's initramfs, made once per run.
func (f *fixture) bootInitrd(t testing.TB) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.initrd == "" {
		f.initrd = bootInitramfs(t, filepath.Dir(f.cache))
	}
	return f.initrd
}

func (f *fixture) options(rev string) Options {
	return Options{
		Repo: f.repo, Rev: rev, Config: "tinyconfig", Fragments: testFragments(),
		CacheDir: f.cache, CcacheDir: cachedir.Dir("ccache"), Log: testLog{},
	}
}

func testFragments() []*kconfigs.Fragment {
	frags := kconfigs.Defaults()
	lean, err := kconfigs.Builtin("lean")
	if err != nil {
		panic(err)
	}
	return append(frags, lean)
}

type testLog struct{}

func (testLog) Write(p []byte) (int, error) {
	fmt.Fprint(os.Stderr, string(p))
	return len(p), nil
}

// build builds commit name once per run (later calls return the first
// result).
func (f *fixture) build(t testing.TB, name string) (*Artifact, error) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.artifacts[name]; ok {
		return a, f.errs[name]
	}
	a, err := Build(context.Background(), f.options(f.commits[name]))
	f.artifacts[name], f.errs[name] = a, err
	if a != nil {
		t.Logf("%s: built in %s (checkout %s, config %s, make %s), cache hit %v, signature %.16s",
			name, a.Timings.Total.Round(time.Second), a.Timings.Checkout.Round(time.Second), a.Timings.Config.Round(time.Second),
			a.Timings.Make.Round(time.Second), a.CacheHit, a.Signature)
	}
	return a, err
}

func (f *fixture) mustBuild(t testing.TB, name string) *Artifact {
	t.Helper()
	a, err := f.build(t, name)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return a
}

func TestBuildBadInput(t *testing.T) {
	f := kernelFixture(t)
	ctx := context.Background()
	cache := t.TempDir()
	notRepo := t.TempDir()
	garbage := filepath.Join(t.TempDir(), "garbage.config")
	os.WriteFile(garbage, []byte("this is not a kernel config\n"), 0o644)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"unknown rev", Options{Repo: f.repo, Rev: "v9.99-no-such", Config: "tinyconfig"}, `unknown revision "v9.99-no-such"`},
		{"not a repo", Options{Repo: notRepo, Rev: "HEAD", Config: "tinyconfig"}, "is not a git repository"},
		{"no repo", Options{Repo: filepath.Join(notRepo, "nope"), Rev: "HEAD", Config: "tinyconfig"}, "does not exist"},
		{"unreadable config", Options{Repo: f.repo, Rev: "HEAD", Config: filepath.Join(notRepo, "missing.config")}, "cannot read the kernel config"},
		{"config is a directory", Options{Repo: f.repo, Rev: "HEAD", Config: notRepo}, "cannot read the kernel config"},
		{"not a config", Options{Repo: f.repo, Rev: "HEAD", Config: garbage}, "is not CONFIG_NAME=value"},
		{"no such compiler", Options{Repo: f.repo, Rev: "HEAD", Config: "tinyconfig", CC: "gcc-99"}, "install it or choose another with --cc"},
		{"no space", Options{Repo: f.repo, Rev: "HEAD", Config: "tinyconfig", MinFree: 1 << 60}, "not enough free disk space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.CacheDir = cache
			_, err := Build(ctx, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			t.Logf("%v", err)
		})
	}
	var de *DiskError
	_, err := Build(ctx, Options{Repo: f.repo, Rev: "HEAD", Config: "tinyconfig", MinFree: 1 << 60, CacheDir: cache})
	if !errors.As(err, &de) || de.Need != 1<<60 || de.Have == 0 {
		t.Errorf("no-space error %#v", err)
	}
	// Nothing was built, checked out or cached.
	if ents, _ := os.ReadDir(filepath.Join(cache, "builds")); len(ents) != 0 {
		t.Errorf("bad input left build cache entries: %v", ents)
	}
	filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "src" {
			t.Errorf("bad input made a checkout: %s", p)
		}
		return nil
	})
}

func TestBuildAndBoot(t *testing.T) {
	f := kernelFixture(t)
	a := f.mustBuild(t, "A")
	for _, p := range []string{a.BzImage, a.Vmlinux, a.Config, a.Log} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("artifact file %s: %v", p, err)
		}
	}
	if a.Modules != "" {
		t.Errorf("tinyconfig kernel has modules at %s", a.Modules)
	}
	if !strings.HasPrefix(a.Release, "6.1.") || strings.ContainsAny(a.Release, "+-") {
		t.Errorf("release %q: want a plain 6.1.x (no commit id, no +)", a.Release)
	}
	if len(a.Signature) != 64 || a.Key == "" || a.Tree == "" || a.Commit != f.commits["A"] {
		t.Errorf("artifact %+v", a)
	}
	cfg, err := kconfigs.ReadConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"XFRM_USER", "INET_ESP", "VIRTIO_NET", "EVENTFD", "SERIAL_8250_CONSOLE", "PVH"} {
		if cfg.Value(s) != "y" {
			t.Errorf("built config has CONFIG_%s=%s", s, cfg.Value(s))
		}
	}
	if len(a.Fixups) != 0 {
		t.Errorf("6.1 got fixups %v", a.Fixups)
	}
	r := boot(t, a.BzImage, f.bootInitrd(t))
	t.Logf("boot A: %s", r)
	if r.Release != a.Release {
		t.Errorf("booted release %s, built %s", r.Release, a.Release)
	}
}

func TestBuildCacheHit(t *testing.T) {
	f := kernelFixture(t)
	a := f.mustBuild(t, "A")
	// Same tree, config, fixups and toolchain: a hit, even when asked by
	// another name of the commit.
	o := f.options("master~2")
	start := time.Now()
	hit, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cache hit in %s", time.Since(start).Round(time.Millisecond))
	if !hit.CacheHit || hit.Dir != a.Dir || hit.Signature != a.Signature || hit.Commit != f.commits["A"] {
		t.Errorf("second build of A: hit %v, dir %s (first %s)", hit.CacheHit, hit.Dir, a.Dir)
	}
	if hit.BuildTime() != a.BuildTime() {
		t.Errorf("a hit reports build time %s, the build took %s", hit.BuildTime(), a.BuildTime())
	}
	// Another config is another kernel.
	o.Fragments = append(testFragments(), mustFragment(t, "debug"))
	p, err := plan(context.Background(), &o)
	if err != nil {
		t.Fatal(err)
	}
	if p.key == a.Key {
		t.Error("adding a fragment kept the cache key")
	}
}

func mustFragment(t testing.TB, name string) *kconfigs.Fragment {
	f, err := kconfigs.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBuildNeighbours(t *testing.T) {
	f := kernelFixture(t)
	a := f.mustBuild(t, "A")
	b := f.mustBuild(t, "B")
	c := f.mustBuild(t, "C")
	if b.CacheHit || c.CacheHit {
		t.Fatal("B or C came from the cache")
	}
	if a.Signature == b.Signature {
		t.Error("a changed printk string kept the signature")
	}
	if b.Signature != c.Signature {
		t.Error("a comment-only change changed the signature")
	}
	// Incremental: B and C recompiled esp4.c and relinked, not the kernel.
	for name, art := range map[string]*Artifact{"B": b, "C": c} {
		log, err := os.ReadFile(art.Log)
		if err != nil {
			t.Fatal(err)
		}
		compiled := strings.Count(string(log), "\n  CC      ")
		if !strings.Contains(string(log), "  CC      net/ipv4/esp4.o") || compiled > 30 {
			t.Errorf("%s: %d files compiled (want esp4.o and a handful): not incremental", name, compiled)
		}
		if !strings.Contains(string(log), "# config: reused") {
			t.Errorf("%s: the config step ran again although only esp4.c changed", name)
		}
		t.Logf("%s: %d files compiled, make %s", name, compiled, art.Timings.Make.Round(time.Second))
	}
	r := boot(t, b.BzImage, f.bootInitrd(t))
	t.Logf("boot B: %s", r)
}

func TestBuildFailure(t *testing.T) {
	f := kernelFixture(t)
	_, err := f.build(t, "D")
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a BuildError", err)
	}
	if !strings.Contains(be.FirstError, "esp4.c") || !strings.Contains(be.FirstError, "error") {
		t.Errorf("first error %q does not point at esp4.c", be.FirstError)
	}
	if be.Commit != f.commits["D"] {
		t.Errorf("error names commit %s", be.Commit)
	}
	if data, err := os.ReadFile(be.Log); err != nil || !strings.Contains(string(data), be.FirstError) {
		t.Errorf("log %s: %v", be.Log, err)
	}
	t.Logf("%v", err)
	o := f.options(f.commits["D"])
	p, _ := plan(context.Background(), &o)
	if _, err := os.Stat(p.entryDir()); err == nil {
		t.Error("a failed build left a cache entry")
	}
}

func TestBuildInterrupted(t *testing.T) {
	f := kernelFixture(t)
	f.mustBuild(t, "C") // so that the slot is past the neighbours' builds
	// A new config rebuilds much; interrupt it in the middle.
	o := f.options(f.commits["C"])
	o.Fragments = append(testFragments(), mustFragment(t, "debug"))
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuffer
	o.BuildLog = &buf
	go func() {
		for !strings.Contains(buf.String(), "  CC ") {
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		cancel()
	}()
	_, err := Build(ctx, o)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want an interruption", err)
	}
	p, _ := plan(context.Background(), &o)
	if _, err := os.Stat(p.entryDir()); err == nil {
		t.Error("an interrupted build left a cache entry")
	}
	ents, _ := os.ReadDir(filepath.Join(f.cache, "builds"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("an interrupted build left %s", e.Name())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestKconfigUserConfig(t *testing.T) {
	f := kernelFixture(t)
	user := filepath.Join(t.TempDir(), "user.config")
	os.WriteFile(user, []byte("CONFIG_64BIT=y\nCONFIG_NET=y\nCONFIG_INET=y\n# CONFIG_XFRM_USER is not set\nCONFIG_HZ_100=y\nCONFIG_LOCALVERSION=\"-reporter\"\n"), 0o644)
	res, err := Kconfig(context.Background(), KconfigOptions{Repo: f.repo, Rev: f.commits["A"], Base: user, Fragments: kconfigs.Defaults(), CacheDir: f.cache})
	if err != nil {
		t.Fatal(err)
	}
	var rep strings.Builder
	res.Report(&rep)
	t.Logf("report:\n%s", rep.String())
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	found := map[string]kconfigs.Change{}
	for _, ch := range res.Changes {
		found[ch.Symbol] = ch
	}
	if ch := found["XFRM_USER"]; ch.Old != "n" || ch.New != "y" || ch.Source != "natt-esp" {
		t.Errorf("XFRM_USER change %+v", ch)
	}
	if ch := found["VIRTIO_NET"]; ch.New != "y" || ch.Source != "qemu-x86_64" {
		t.Errorf("VIRTIO_NET change %+v", ch)
	}
	// The user's options stay.
	if res.Final.Value("HZ_100") != "y" || res.Final.Value("LOCALVERSION") != `"-reporter"` {
		t.Error("the user's HZ_100 or LOCALVERSION did not survive")
	}
}

// TestZZUserRepoUnchanged runs last: after every build, the user's
// repository is byte for byte as before.
func TestZZUserRepoUnchanged(t *testing.T) {
	f := kernelFixture(t)
	after, err := repoState(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	if after != f.before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", f.before, after)
	}
}
