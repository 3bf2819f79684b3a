// Package kbuild builds one commit of a kernel tree with the user's config:
// in a checkout kbisect owns (never the user's), with old-tree fixups and a
// toolchain chosen by kernel version, ccache, a persistent O= directory per
// build slot so that neighbouring commits rebuild incrementally, and a cache
// of finished kernels keyed by (tree, config, fixups, toolchain).
package kbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/jsondur"
	"github.com/kbisect/kbisect/internal/procgroup"
	"github.com/kbisect/kbisect/kconfigs"
)

// keyVersion changes when the layout or meaning of cache entries does.
const keyVersion = "kbuild/2"

// Reproducible-build settings: the same sources and config give the same
// vmlinux whatever the commit, machine or time (see Signature).
var reproducibleEnv = []string{
	"KBUILD_BUILD_TIMESTAMP=Thu Jan  1 00:00:00 UTC 2015",
	"KBUILD_BUILD_USER=kbisect",
	"KBUILD_BUILD_HOST=kbisect",
	"KBUILD_BUILD_VERSION=1",
	"SOURCE_DATE_EPOCH=1420070400",
	"TZ=UTC",
	"LC_ALL=C",
	// scripts/setlocalversion would append the commit id (or "+") to the
	// release string, making every commit's kernel differ: hide the
	// checkout's git from the build.
	"GIT_DIR=/nonexistent-kbisect",
	"GIT_CEILING_DIRECTORIES=/",
}

// Options says what to build.
type Options struct {
	// Repo is the path of the user's kernel git repository (read only).
	Repo string
	// Rev is the commit to build (anything git rev-parse takes).
	Rev string
	// Config is the path of the user's .config, or a base config name:
	// "defconfig", "tinyconfig", "allnoconfig".
	Config string
	// Fragments are merged into Config (after version gating) and must
	// survive olddefconfig; nil builds Config as it is.
	Fragments []*kconfigs.Fragment
	// Jobs is make's -j (default: the number of CPUs).
	Jobs int
	// CC overrides the compiler, e.g. "gcc-12" or "gcc-11".
	CC string
	// NoCcache disables ccache (it is on when ccache is installed).
	NoCcache bool
	// CacheDir is the root of kbisect's caches (default: see cachedir):
	// builds/ holds finished kernels, kbuild/ the slots, ccache/ ccache.
	CacheDir string
	// CcacheDir overrides ccache's directory (default: CacheDir/ccache).
	CcacheDir string
	// Slots is the number of build slots per repository (default 1):
	// builds beyond it wait for a free slot.
	Slots int
	// MinFree overrides the disk space a build must find free (bytes);
	// zero estimates it from the config and the slot's state.
	MinFree uint64
	// NoCache skips the lookup (the result is still stored).
	NoCache bool
	// Fixups and Toolchains override the tables (nil: the defaults).
	Fixups     []Fixup
	Toolchains []ToolchainRule
	// Log receives progress lines; BuildLog, if set, also receives make's
	// output.
	Log, BuildLog io.Writer
}

// Artifact is a built kernel in the build cache. Its files must not be
// modified; copy them (CopyTo) to change them.
type Artifact struct {
	// Dir is the cache entry; the paths below are inside it.
	Dir     string `json:"-"`
	BzImage string `json:"-"`
	Vmlinux string `json:"-"`
	Config  string `json:"-"` // the final .config
	Log     string `json:"-"` // the build log
	// Modules is the INSTALL_MOD_PATH root (lib/modules/<release>/...),
	// "" when the kernel has no modules.
	Modules string `json:"-"`

	// Key is the cache key: a hash of Tree, the config inputs, the fixups
	// and the toolchain.
	Key string `json:"key"`
	// Commit is the commit asked for; Tree its tree hash. A cache hit
	// may come from another commit with the same tree (BuiltCommit).
	Commit      string `json:"-"`
	BuiltCommit string `json:"commit"`
	Tree        string `json:"tree"`
	Version     string `json:"version"`
	Release     string `json:"release"` // kernel release string (uname -r)
	// Signature is the hash of the kernel's allocated sections (see
	// Signature): equal signatures mean the same kernel.
	Signature string   `json:"signature"`
	Fixups    []string `json:"fixups"`
	Toolchain string   `json:"toolchain"`
	// Warnings are optional fragment settings that did not survive.
	Warnings []string `json:"warnings,omitempty"`
	// Built is when the kernel was built; Timings how long each step took
	// then.
	Built   time.Time `json:"built"`
	Timings Timings   `json:"timings"`

	// CacheHit is set when this call found the kernel in the cache;
	// Elapsed is how long this call took.
	CacheHit bool          `json:"-"`
	Elapsed  time.Duration `json:"-"`
}

// Timings are the durations of a build's steps, in JSON as seconds
// (checkout_s, ...; see jsondur).
type Timings struct {
	Checkout time.Duration `json:"-"`
	Config   time.Duration `json:"-"`
	Make     time.Duration `json:"-"`
	Install  time.Duration `json:"-"`
	Total    time.Duration `json:"-"`
}

func (t *Timings) fields() []jsondur.Field {
	return []jsondur.Field{{Key: "checkout", D: &t.Checkout}, {Key: "config", D: &t.Config}, {Key: "make", D: &t.Make},
		{Key: "install", D: &t.Install}, {Key: "total", D: &t.Total}}
}

// MarshalJSON writes the timings in seconds.
func (t Timings) MarshalJSON() ([]byte, error) { return jsondur.Add([]byte("{}"), t.fields()) }

// UnmarshalJSON reads the timings in seconds, or in nanoseconds from a
// cache entry written before.
func (t *Timings) UnmarshalJSON(b []byte) error { return jsondur.Read(b, t.fields()) }

// BuildTime is how long the build that produced the kernel took.
func (a *Artifact) BuildTime() time.Duration { return a.Timings.Total }

// Build builds o.Rev of o.Repo, or returns it from the build cache. A
// compile or link failure is a *BuildError, a required config setting that
// this version rejects a *ConfigError, a lack of disk space a *DiskError;
// anything else is an infrastructure error. On error no cache entry exists.
func Build(ctx context.Context, o Options) (*Artifact, error) {
	start := time.Now()
	p, err := plan(ctx, &o)
	if err != nil {
		return nil, err
	}
	if !o.NoCache {
		if a, err := p.lookup(); err == nil {
			a.Commit, a.CacheHit, a.Elapsed = p.commit, true, time.Since(start)
			p.logf("build cache hit for %s: %s", gitrepo.Short(p.commit), a.Dir)
			return a, nil
		}
	}
	// One build per key at a time, across processes: whoever waited finds
	// the kernel the other built (two bisections, or two test packages,
	// asking for the same tree and config). The lock files stay in a
	// directory of their own, never among the kernels.
	if err := os.MkdirAll(filepath.Join(p.cacheRoot, "locks"), 0o755); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	unlock, err := fsutil.Lock(ctx, filepath.Join(p.cacheRoot, "locks", p.key+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !o.NoCache {
		if a, err := p.lookup(); err == nil {
			a.Commit, a.CacheHit, a.Elapsed = p.commit, true, time.Since(start)
			p.logf("build cache hit for %s after waiting for another build of it: %s", gitrepo.Short(p.commit), a.Dir)
			return a, nil
		}
	}
	a, err := p.build(ctx)
	if err != nil {
		return nil, err
	}
	a.Commit, a.Elapsed = p.commit, time.Since(start)
	return a, nil
}

// planned is everything known about a build before it runs.
type planned struct {
	o         *Options
	repo      *gitrepo.Repo
	commit    string
	tree      string
	version   kconfigs.Version
	userCfg   *kconfigs.Config // nil for a base config name
	toolchain *Toolchain
	fixups    []Fixup
	key       string
	cacheRoot string
}

func (p *planned) logf(format string, args ...any) {
	if p.o.Log != nil {
		fmt.Fprintf(p.o.Log, "kbuild: "+format+"\n", args...)
	}
}

// plan checks the inputs and computes the cache key, without a checkout.
func plan(ctx context.Context, o *Options) (*planned, error) {
	if o.Repo == "" || o.Rev == "" || o.Config == "" {
		return nil, errors.New("kbuild: a repository, a revision and a config are needed (--repo, --rev, --config)")
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Fixups == nil {
		o.Fixups = Fixups
	}
	if o.Toolchains == nil {
		o.Toolchains = Toolchains
	}
	p := &planned{o: o, cacheRoot: o.CacheDir}
	if p.cacheRoot == "" {
		p.cacheRoot = cachedir.Dir("")
	}
	var err error
	if p.repo, err = gitrepo.Open(ctx, o.Repo); err != nil {
		return nil, err
	}
	if p.commit, err = p.repo.Resolve(ctx, o.Rev); err != nil {
		return nil, err
	}
	out, err := p.repo.Git(ctx, "rev-parse", p.commit+"^{tree}")
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", gitrepo.Short(p.commit), err)
	}
	p.tree = strings.TrimSpace(out)
	src := commitTree{ctx, p.repo, p.commit}
	mk, err := src.ReadFile("Makefile")
	if err != nil {
		return nil, fmt.Errorf("%s in %s has no top Makefile: not a kernel tree", gitrepo.Short(p.commit), o.Repo)
	}
	if p.version, err = kconfigs.MakefileVersion(mk); err != nil {
		return nil, fmt.Errorf("%s in %s: %w", gitrepo.Short(p.commit), o.Repo, err)
	}

	h := sha256.New()
	fmt.Fprintf(h, "%s\ntree %s\n", keyVersion, p.tree)
	if kconfigs.IsBaseName(o.Config) {
		fmt.Fprintf(h, "base %s\n", o.Config)
	} else {
		data, err := os.ReadFile(o.Config)
		if err != nil {
			return nil, fmt.Errorf("cannot read the kernel config %s: %w", o.Config, err)
		}
		if p.userCfg, err = kconfigs.ParseConfig(data); err != nil {
			return nil, fmt.Errorf("kernel config %s: %w", o.Config, err)
		}
		fmt.Fprintf(h, "config %x\n", sha256.Sum256(data))
	}
	// The settings the fragments ask of this version, not the fragments'
	// text: a setting gated to other versions (added for a newer kernel,
	// say) leaves this version's kernels in the cache.
	keep, _ := kconfigs.For(p.version, o.Fragments...)
	for _, s := range keep {
		fmt.Fprintf(h, "setting %s optional=%v module=%v\n", s, s.Optional, s.ModuleOK)
	}

	if p.toolchain, err = ToolchainFor(ctx, o.Toolchains, p.version, o.CC); err != nil {
		return nil, err
	}
	if !o.NoCcache {
		_, err := exec.LookPath("ccache")
		p.toolchain.Ccache = err == nil
	}
	env := FixupEnv{Version: p.version, GCCMajor: p.toolchain.GCCMajor}
	if p.fixups, err = Select(o.Fixups, src, env); err != nil {
		return nil, err
	}
	fmt.Fprintf(h, "fixups %s\ntoolchain %s\n", strings.Join(FixupIDs(p.fixups), ","), p.toolchain.ID(ctx))
	p.key = hex.EncodeToString(h.Sum(nil))[:32]
	return p, nil
}

func (p *planned) entryDir() string { return filepath.Join(p.cacheRoot, "builds", p.key) }

// lookup returns the cached artifact, if any.
func (p *planned) lookup() (*Artifact, error) {
	return ReadArtifact(p.entryDir())
}

// ReadArtifact reads the cache entry (or a copy made by CopyTo) in dir.
func ReadArtifact(dir string) (*Artifact, error) {
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	a := &Artifact{}
	if err := json.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("build cache entry %s: %w", dir, err)
	}
	a.fill(dir)
	for _, f := range []string{a.BzImage, a.Vmlinux, a.Config} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("build cache entry %s is incomplete: %w", dir, err)
		}
	}
	a.Commit = a.BuiltCommit
	return a, nil
}

func (a *Artifact) fill(dir string) {
	a.Dir = dir
	a.BzImage = filepath.Join(dir, "bzImage")
	a.Vmlinux = filepath.Join(dir, "vmlinux")
	a.Config = filepath.Join(dir, "config")
	a.Log = filepath.Join(dir, "build.log")
	a.Modules = ""
	if _, err := os.Stat(filepath.Join(dir, "modules")); err == nil {
		a.Modules = filepath.Join(dir, "modules")
	}
}

// CopyTo copies the artifact's files into dir (hard links when possible)
// and returns the copy: the artifact with its files in dir.
func (a *Artifact) CopyTo(dir string) (*Artifact, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory %s: %w", dir, err)
	}
	if err := a.copyFiles(dir); err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", a.Dir, dir, err)
	}
	return ReadArtifact(dir)
}

func (a *Artifact) copyFiles(dir string) error {
	return filepath.Walk(a.Dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a.Dir, path)
		dst := filepath.Join(dir, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(dst, 0o755)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(dst)
			return os.Symlink(target, dst)
		}
		os.Remove(dst)
		if err := os.Link(path, dst); err == nil {
			return nil
		}
		return fsutil.CopyFile(path, dst, fi.Mode().Perm())
	})
}

// build runs the build in a slot and stores the artifact.
func (p *planned) build(ctx context.Context) (a *Artifact, err error) {
	o := p.o
	var t Timings
	start := time.Now()
	repoID := sha256.Sum256([]byte(p.repo.Dir))
	slotsBase := filepath.Join(p.cacheRoot, "kbuild", filepath.Base(p.repo.Dir)+"-"+hex.EncodeToString(repoID[:])[:12])
	s, err := acquireSlot(ctx, slotsBase, o.Slots, o.Log)
	if err != nil {
		return nil, err
	}
	defer s.release()

	// Disk first: nothing is written before we know it fits.
	need := o.MinFree
	if need == 0 {
		need = estimateNeed(s, p.userCfg)
	}
	have, err := freeBytes(p.cacheRoot)
	if err != nil {
		return nil, err
	}
	if have < need {
		return nil, &DiskError{Dir: p.cacheRoot, Need: need, Have: have}
	}

	p.logf("building %s (Linux %s) in %s with %s", gitrepo.Short(p.commit), p.version, s.dir, p.toolchain)
	ws, err := p.repo.Workspace(ctx, s.src)
	if err != nil {
		return nil, err
	}
	if err := ws.Checkout(ctx, p.commit); err != nil {
		return nil, err
	}
	rec := &recordingTree{WritableTree: DirTree(s.src)}
	env := FixupEnv{Version: p.version, GCCMajor: p.toolchain.GCCMajor}
	if err := ApplyAll(p.fixups, rec, env); err != nil {
		return nil, err
	}
	if err := s.stabilizeMtimes(rec.written); err != nil {
		return nil, fmt.Errorf("fixups in %s: %w", s.src, err)
	}
	if len(p.fixups) > 0 {
		p.logf("applied fixups: %s", strings.Join(FixupIDs(p.fixups), " "))
	}
	t.Checkout = time.Since(start)

	staging, err := os.MkdirTemp(filepath.Join(p.cacheRoot, "builds"), ".tmp-"+p.key[:12]+"-")
	if errors.Is(err, os.ErrNotExist) {
		os.MkdirAll(filepath.Join(p.cacheRoot, "builds"), 0o755)
		staging, err = os.MkdirTemp(filepath.Join(p.cacheRoot, "builds"), ".tmp-"+p.key[:12]+"-")
	}
	if err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	defer func() {
		if staging != "" {
			os.RemoveAll(staging)
		}
	}()
	logPath := filepath.Join(staging, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var out io.Writer = logFile
	if o.BuildLog != nil {
		out = io.MultiWriter(logFile, o.BuildLog)
	}
	fmt.Fprintf(logFile, "# kbisect build of %s (tree %s, Linux %s)\n# toolchain: %s\n# fixups: %s\n",
		p.commit, p.tree, p.version, p.toolchain, strings.Join(FixupIDs(p.fixups), " "))

	makeEnv := p.env()
	vars := p.toolchain.Vars()

	// Config.
	cstart := time.Now()
	m := &kconfigs.Make{SrcDir: s.src, ObjDir: s.obj, Version: p.version, Vars: vars, Env: makeEnv, Log: out}
	res, reused, err := p.configure(ctx, s, ws, m)
	if err != nil {
		return nil, p.configFailure(err, logPath)
	}
	if reused {
		p.logf("config unchanged since the last build in this slot: olddefconfig skipped")
		fmt.Fprintf(logFile, "# config: reused %s (same inputs, no Kconfig change)\n", filepath.Join(s.obj, ".config"))
	}
	var warnings []string
	for _, pr := range res.Problems {
		if pr.Optional {
			warnings = append(warnings, pr.String())
		}
	}
	if err := res.Err(); err != nil {
		var ce *kconfigs.CheckError
		errors.As(err, &ce)
		return nil, &ConfigError{Commit: p.commit, CheckError: ce}
	}
	t.Config = time.Since(cstart)

	// Make.
	mstart := time.Now()
	modules := res.Final.Value("MODULES") == "y"
	targets := []string{"bzImage"}
	if modules {
		targets = append(targets, "modules")
	}
	p.logf("make -j%d %s (log: %s)", o.Jobs, strings.Join(targets, " "), logPath)
	if err := p.make(ctx, s, vars, makeEnv, out, targets...); err != nil {
		return nil, p.buildFailure(ctx, err, logPath)
	}
	t.Make = time.Since(mstart)

	// Artifact.
	istart := time.Now()
	a = &Artifact{Key: p.key, BuiltCommit: p.commit, Tree: p.tree, Version: p.version.String(),
		Fixups: FixupIDs(p.fixups), Toolchain: p.toolchain.String(), Warnings: warnings, Built: time.Now().UTC()}
	for _, f := range [][2]string{
		{"arch/x86/boot/bzImage", "bzImage"},
		{"vmlinux", "vmlinux"},
		{".config", "config"},
	} {
		if err := fsutil.CopyFile(filepath.Join(s.obj, f[0]), filepath.Join(staging, f[1]), 0o644); err != nil {
			return nil, fmt.Errorf("collect %s: %w", f[0], err)
		}
	}
	if rel, err := os.ReadFile(filepath.Join(s.obj, "include/config/kernel.release")); err == nil {
		a.Release = strings.TrimSpace(string(rel))
	}
	if modules {
		if err := p.make(ctx, s, vars, makeEnv, out, "modules_install", "INSTALL_MOD_PATH="+filepath.Join(staging, "modules")); err != nil {
			return nil, p.buildFailure(ctx, err, logPath)
		}
	}
	if a.Signature, err = Signature(filepath.Join(staging, "vmlinux")); err != nil {
		return nil, err
	}
	t.Install = time.Since(istart)
	t.Total = time.Since(start)
	a.Timings = t
	fmt.Fprintf(logFile, "# built in %s (make %s); signature %s\n", t.Total.Round(time.Second), t.Make.Round(time.Second), a.Signature)
	if err := logFile.Close(); err != nil {
		return nil, err
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return nil, err
	}
	meta, _ := json.MarshalIndent(a, "", "  ")
	if err := fsutil.WriteFile(filepath.Join(staging, "meta.json"), meta, 0o644); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Publish atomically. Another process may have published the same key
	// meanwhile: then keep theirs, unless we were asked not to use the
	// cache (then ours replaces it).
	if o.NoCache {
		if _, err := os.Stat(p.entryDir()); err == nil {
			trash := staging + ".old"
			if err := os.Rename(p.entryDir(), trash); err == nil {
				defer os.RemoveAll(trash)
			}
		}
	}
	if err := os.Rename(staging, p.entryDir()); err != nil {
		if _, err2 := os.Stat(filepath.Join(p.entryDir(), "meta.json")); err2 != nil {
			return nil, fmt.Errorf("build cache: publish %s: %w", p.entryDir(), err)
		}
	} else {
		staging = ""
	}
	p.logf("built %s in %s (make %s), signature %s, kernel in %s", gitrepo.Short(p.commit), t.Total.Round(time.Second), t.Make.Round(time.Second), a.Signature[:16], p.entryDir())
	return ReadArtifact(p.entryDir())
}

// env is make's environment: ours minus what would redirect the build
// (a parent make's jobserver, ARCH, O, KBUILD_*), plus the reproducible
// build settings and ccache's.
func (p *planned) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name := strings.SplitN(kv, "=", 2)[0]
		switch {
		case strings.HasPrefix(name, "KBUILD_"), strings.HasPrefix(name, "GIT_"), strings.HasPrefix(name, "CCACHE_"),
			strings.HasPrefix(name, "KCONFIG_"):
			continue
		}
		switch name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARCH", "SUBARCH", "CROSS_COMPILE", "O", "CC", "HOSTCC",
			"LD", "CFLAGS", "KCFLAGS", "KAFLAGS", "LOCALVERSION", "INSTALL_MOD_PATH", "SOURCE_DATE_EPOCH", "TZ", "LC_ALL":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, reproducibleEnv...)
	if p.toolchain.Ccache {
		ccdir := p.o.CcacheDir
		if ccdir == "" {
			ccdir = filepath.Join(p.cacheRoot, "ccache")
		}
		env = append(env, "CCACHE_DIR="+ccdir, "CCACHE_MAXSIZE=20G", "CCACHE_NOHASHDIR=1",
			"CCACHE_BASEDIR="+filepath.Join(p.cacheRoot, "kbuild"))
	}
	return env
}

// make runs make in the slot's O= directory, in a process group of its
// own that does not outlive kbisect (internal/procgroup). On cancellation,
// and if kbisect dies, the whole group gets SIGTERM first, so make deletes
// half-written targets. It runs at nice 10: a build must not take the CPU
// from guest pairs running beside it (another bisection's, or this one's
// with --parallel), whose throughput, and so the evidence a run gives,
// collapses when their vCPU threads wait for it (a QEMU pair moved 3.9
// Mbit/s with a 48 ms RTT beside two builds, 50 and more alone).
func (p *planned) make(ctx context.Context, s *slot, vars, env []string, out io.Writer, targets ...string) error {
	args := append([]string{"-C", s.src, "O=" + s.obj, fmt.Sprintf("-j%d", p.o.Jobs)}, vars...)
	args = append(args, targets...)
	cmd := exec.CommandContext(ctx, "nice", append([]string{"-n", "10", "make"}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 30 * time.Second
	fmt.Fprintf(out, "# make %s\n", strings.Join(args, " "))
	return procgroup.Run(cmd, syscall.SIGTERM)
}

// failedLog keeps a failed build's log where it outlives the staging
// directory.
func (p *planned) failedLog(logPath string) string {
	dir := filepath.Join(p.cacheRoot, "kbuild", "failed")
	os.MkdirAll(dir, 0o755)
	dst := filepath.Join(dir, gitrepo.Short(p.commit)+"-"+p.key[:12]+".log")
	if err := fsutil.CopyFile(logPath, dst, 0o644); err != nil {
		return logPath
	}
	return dst
}

func (p *planned) buildFailure(ctx context.Context, err error, logPath string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("build of %s interrupted: %w", gitrepo.Short(p.commit), ctx.Err())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("build of %s: make: %w", gitrepo.Short(p.commit), err)
	}
	log := p.failedLog(logPath)
	return &BuildError{Commit: p.commit, FirstError: FirstError(log), Log: log, Err: err}
}

func (p *planned) configFailure(err error, logPath string) error {
	var ce *kconfigs.ConfigError
	if errors.As(err, &ce) {
		log := p.failedLog(logPath)
		return &BuildError{Commit: p.commit, FirstError: FirstError(log), Log: log, Err: err}
	}
	return err
}
