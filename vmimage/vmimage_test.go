package vmimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

func TestBuildMinimal(t *testing.T) {
	ctx := context.Background()
	img, err := Build(ctx, Options{SourceDir: standInSource(t), CacheDir: sharedCache()})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(img.Path) != sharedCache() || !strings.Contains(filepath.Base(img.Path), img.Key) {
		t.Errorf("image %s not in cache %s under key %s", img.Path, sharedCache(), img.Key)
	}
	files, _ := readImage(t, img.Path)
	init, ok := files["init"]
	if !ok {
		t.Fatal("no /init in image")
	}
	if init.Mode&cpio.S_IFMT != cpio.S_IFREG || init.Mode&0o111 == 0 {
		t.Errorf("/init mode %o: want an executable regular file", init.Mode)
	}
	checkStaticBinary(t, "/init", init.data)
	for _, dev := range []string{"dev/console", "dev/null", "dev/urandom"} {
		if e, ok := files[dev]; !ok || e.Mode&cpio.S_IFMT != cpio.S_IFCHR {
			t.Errorf("%s: missing or not a character device", dev)
		}
	}
	for _, d := range []string{"proc", "sys", "tmp"} {
		if e, ok := files[d]; !ok || e.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("%s: missing or not a directory", d)
		}
	}
	if _, ok := files["bbin/bb"]; ok {
		t.Error("minimal image has the shell busybox")
	}
	if img.Shell || len(img.Modules) != 0 {
		t.Errorf("minimal image: Shell=%v Modules=%v", img.Shell, img.Modules)
	}
}

func TestBuildShell(t *testing.T) {
	img, err := Build(context.Background(), Options{SourceDir: standInSource(t), CacheDir: sharedCache(), Shell: true})
	if err != nil {
		t.Fatal(err)
	}
	files, n := readImage(t, img.Path)
	if n != 2 {
		t.Errorf("image has %d archives, want 2 (agent, shell)", n)
	}
	if _, ok := files["init"]; !ok {
		t.Error("no /init")
	}
	bb, ok := files["bbin/bb"]
	if !ok {
		t.Fatal("no /bbin/bb")
	}
	checkStaticBinary(t, "/bbin/bb", bb.data)
	for _, c := range shellCommands {
		e, ok := files["bbin/"+c]
		if !ok {
			t.Errorf("no /bbin/%s", c)
			continue
		}
		if e.Mode&cpio.S_IFMT != cpio.S_IFLNK || string(e.data) != "bb" {
			t.Errorf("/bbin/%s: mode %o target %q, want a link to bb", c, e.Mode, e.data)
		}
	}
	if sh, ok := files["bin/sh"]; !ok || sh.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Error("no /bin/sh link")
	} else if target := path.Clean(path.Join("/bin", string(sh.data))); target != ShellPath {
		t.Errorf("/bin/sh -> %s, want %s", target, ShellPath)
	}
}

// TestToolsFile checks that tools.go names exactly the shell commands, so
// go mod tidy keeps what the shell build needs.
func TestToolsFile(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "tools.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, is := range f.Imports {
		p, _ := strconv.Unquote(is.Path.Value)
		got = append(got, strings.TrimPrefix(p, "github.com/u-root/u-root/cmds/core/"))
	}
	want := slices.Clone(shellCommands)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tools.go imports %v\nshellCommands     %v", got, want)
	}
}

func TestWithFiles(t *testing.T) {
	ctx := context.Background()
	base, err := Build(ctx, Options{SourceDir: standInSource(t), CacheDir: sharedCache()})
	if err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, base.Path)
	params := []byte(`{"role":"sender"}`)
	out := filepath.Join(t.TempDir(), "run.cpio")
	err = WithFiles(ctx, base, map[string][]byte{"/kbisect/params.json": params, "etc/extra": []byte("x")}, out)
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, base.Path) != before {
		t.Error("WithFiles changed the cached base image")
	}
	baseFiles, baseN := readImage(t, base.Path)
	files, n := readImage(t, out)
	if n != baseN+1 {
		t.Errorf("%d archives, want base's %d + 1", n, baseN)
	}
	if got := files["kbisect/params.json"]; !bytes.Equal(got.data, params) || got.Mode&cpio.S_IFMT != cpio.S_IFREG {
		t.Errorf("kbisect/params.json = %q mode %o", got.data, got.Mode)
	}
	if d := files["kbisect"]; d.Mode&cpio.S_IFMT != cpio.S_IFDIR {
		t.Error("no /kbisect directory record before its file")
	}
	if !bytes.Equal(files["init"].data, baseFiles["init"].data) {
		t.Error("/init differs from the base image's")
	}

	for _, bad := range []string{"", "/", "../etc/passwd", "kbisect/../../x"} {
		if err := WithFiles(ctx, base, map[string][]byte{bad: nil}, out); err == nil {
			t.Errorf("WithFiles accepted file name %q", bad)
		}
	}
	if err := WithFiles(ctx, nil, nil, out); err == nil {
		t.Error("WithFiles accepted a nil base")
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestCacheHit(t *testing.T) {
	ctx := context.Background()
	var log bytes.Buffer
	opts := Options{SourceDir: standInSource(t), CacheDir: t.TempDir(), Log: &log}
	a, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(a.Path)
	log.Reset()
	b, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(b.Path)
	if a.Key != b.Key || a.Path != b.Path {
		t.Errorf("second build: key %s path %s, first %s %s", b.Key, b.Path, a.Key, a.Path)
	}
	if !st1.ModTime().Equal(st2.ModTime()) || log.Len() != 0 {
		t.Errorf("second build rebuilt the image (log %q)", log.String())
	}
}

// TestKeys checks what changes an image's key and what does not.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	modsDir := debianModules(t)
	type mutation struct {
		name   string
		change func(t *testing.T, src string, o *Options)
		same   bool
	}
	write := func(t *testing.T, p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	appendTo := func(t *testing.T, p, s string) {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		write(t, p, string(b)+s)
	}
	for _, m := range []mutation{
		{"nothing", func(*testing.T, string, *Options) {}, true},
		{"agent source", func(t *testing.T, src string, _ *Options) {
			appendTo(t, filepath.Join(src, "cmd/kbisect-agent/main.go"), "\n// changed\n")
		}, false},
		{"new agent file", func(t *testing.T, src string, _ *Options) {
			write(t, filepath.Join(src, "cmd/kbisect-agent/extra.go"), "package main\n")
		}, false},
		{"agent test file", func(t *testing.T, src string, _ *Options) {
			write(t, filepath.Join(src, "cmd/kbisect-agent/main_test.go"), "package main\n")
		}, true},
		{"package the agent imports", func(t *testing.T, src string, _ *Options) {
			write(t, filepath.Join(src, "internal/util/util.go"), "package util\n\n// X is x.\nconst X = 1\n")
			appendTo(t, filepath.Join(src, "cmd/kbisect-agent/main.go"), "\nvar _ = util.X\n")
			b, _ := os.ReadFile(filepath.Join(src, "cmd/kbisect-agent/main.go"))
			write(t, filepath.Join(src, "cmd/kbisect-agent/main.go"), strings.Replace(string(b), "import (", "import (\n\t\"github.com/kbisect/kbisect/internal/util\"", 1))
		}, false},
		{"unrelated package", func(t *testing.T, src string, _ *Options) {
			write(t, filepath.Join(src, "bisect/bisect.go"), "package bisect\n")
		}, true},
		{"go.sum", func(t *testing.T, src string, _ *Options) {
			appendTo(t, filepath.Join(src, "go.sum"), "example.com/x v1.0.0 h1:AAAA=\n")
		}, false},
		{"shell", func(_ *testing.T, _ string, o *Options) { o.Shell = true }, false},
		{"modules", func(_ *testing.T, _ string, o *Options) { o.ModulesDir = modsDir }, false},
		{"cache dir", func(_ *testing.T, _ string, o *Options) { o.CacheDir = "/elsewhere" }, true},
	} {
		t.Run(m.name, func(t *testing.T) {
			src, err := newStandInSource(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			o := Options{SourceDir: src, CacheDir: sharedCache()}
			p1, err := plan(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			m.change(t, src, &o)
			p2, err := plan(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if same := p1.img.Key == p2.img.Key; same != m.same {
				t.Errorf("key same=%v after %s, want %v", same, m.name, m.same)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	src := standInSource(t)
	noDep := t.TempDir()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"not a module root", Options{SourceDir: t.TempDir()}, "no go.mod of module"},
		{"modules without dir", Options{SourceDir: src, Modules: []string{"esp4"}}, "without a modules dir"},
		{"modules dir without modules.dep", Options{SourceDir: src, ModulesDir: noDep}, "modules.dep"},
		{"agent outside module", Options{SourceDir: src, Agent: "example.com/agent"}, "not in module"},
		{"agent package missing", Options{SourceDir: src, Agent: ModulePath + "/cmd/nope"}, "cmd/nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.CacheDir = t.TempDir()
			_, err := Build(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFindSourceDir(t *testing.T) {
	wd, _ := os.Getwd()
	root, err := findSourceDir()
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(root, wd); err != nil || strings.HasPrefix(rel, "..") || !isModuleRoot(root) {
		t.Fatalf("source dir %s: want the root of %s above the working directory %s", root, ModulePath, wd)
	}
	elsewhere := t.TempDir() // no go.mod above it; nor above the test binary
	for _, tc := range []struct {
		name, env, cwd string
		want, err      string
	}{
		{name: "from the working directory", want: root},
		{name: "from the variable", env: root, cwd: elsewhere, want: root},
		{name: "variable not a tree", env: elsewhere, err: SourceEnv + "=" + elsewhere + ": no go.mod"},
		{name: "nowhere", cwd: elsewhere, err: "set " + SourceEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SourceEnv, tc.env)
			if tc.cwd != "" {
				t.Chdir(tc.cwd)
			}
			d, err := findSourceDir()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v: want an error with %q", d, err, tc.err)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Fatalf("got %q, %v: want %s", d, err, tc.want)
			}
		})
	}
}

// TestConcurrentBuilds starts several builds of one image on an empty cache:
// all get the same complete image, built once.
func TestConcurrentBuilds(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	var mu sync.Mutex
	var log bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	const n = 4
	imgs := make([]*Image, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs[i], errs[i] = Build(ctx, Options{SourceDir: standInSource(t), CacheDir: cache, Log: w})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if imgs[i].Path != imgs[0].Path {
			t.Errorf("build %d: %s, build 0: %s", i, imgs[i].Path, imgs[0].Path)
		}
	}
	if c := strings.Count(log.String(), "built agent layer"); c != 1 {
		t.Errorf("agent layer built %d times:\n%s", c, log.String())
	}
	files, _ := readImage(t, imgs[0].Path)
	checkStaticBinary(t, "/init", files["init"].data)
	left, _ := filepath.Glob(filepath.Join(cache, "*.tmp-*"))
	leftLayers, _ := filepath.Glob(filepath.Join(cache, "layers", "*.tmp-*"))
	scratch, _ := os.ReadDir(filepath.Join(cache, "tmp"))
	if len(left)+len(leftLayers)+len(scratch) > 0 {
		t.Errorf("left behind: %v %v %d scratch dirs", left, leftLayers, len(scratch))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestBootDebian boots Debian's kernel under QEMU with a minimal image, and
// with an image with the shell and the modules of DefaultModules plus
// AccelModules: the stand-in /init loads the modules in the image's order,
// installs an ESP-in-UDP transport SA for each suite, and runs the shell.
func TestBootDebian(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	ctx := context.Background()
	kernel, modsDir := debianKernel(t)
	src := standInSource(t)

	t.Run("minimal", func(t *testing.T) {
		img, err := Build(ctx, Options{SourceDir: src, CacheDir: sharedCache()})
		if err != nil {
			t.Fatal(err)
		}
		r := boot(t, kernel, img.Path)
		t.Logf("/init at guest uptime %.2fs, QEMU wall %.1fs", r.uptime, r.wall.Seconds())
	})

	// The default CPU model (qemu64) lacks AES-NI, SSSE3 and PCLMUL: the
	// accelerated modules fail with ENODEV there and load on -cpu max.
	for _, tc := range []struct {
		name      string
		qemuArgs  []string
		accelLoad bool
	}{
		{"shell+modules", nil, false},
		{"modules on cpu max", []string{"-cpu", "max"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := append(slices.Clone(DefaultModules), AccelModules...)
			img, err := Build(ctx, Options{SourceDir: src, CacheDir: sharedCache(), Shell: true, ModulesDir: modsDir, Modules: mods})
			if err != nil {
				t.Fatal(err)
			}
			params, _ := json.Marshal(map[string]any{"modules": img.Modules, "xfrm": true, "shell": !tc.accelLoad})
			run := filepath.Join(t.TempDir(), "run.cpio")
			if err := WithFiles(ctx, img, map[string][]byte{"/kbisect/params.json": params}, run); err != nil {
				t.Fatal(err)
			}
			r := boot(t, kernel, run, tc.qemuArgs...)
			t.Logf("/init at guest uptime %.2fs, QEMU wall %.1fs", r.uptime, r.wall.Seconds())

			accel := map[string]bool{}
			for _, a := range AccelModules {
				accel[a] = true
			}
			for _, m := range img.Modules {
				res := strings.TrimPrefix(lineWith(r.console, "STANDIN-MODULE "+m+" "), "STANDIN-MODULE "+m+" ")
				switch {
				case res == "ok":
				case !tc.accelLoad && accel[moduleName(m)] && strings.HasPrefix(res, "errno=19 "): // ENODEV
					t.Logf("%s: not for this CPU (%s)", moduleName(m), res)
				default:
					t.Errorf("module %s: %q", m, res)
				}
			}
			for _, s := range []string{"cbc-aes-sha1", "cbc-aes-sha256", "gcm-aes", "null-sha1"} {
				if res := strings.TrimPrefix(lineWith(r.console, "STANDIN-XFRM "+s+" "), "STANDIN-XFRM "+s+" "); res != "ok" {
					t.Errorf("ESP-in-UDP SA %s: %q", s, res)
				}
			}
			if tc.accelLoad {
				return
			}
			f := strings.Fields(lineWith(r.console, "STANDIN-SHELL "))
			if len(f) != 2 {
				t.Fatalf("shell did not run; console:\n%s", r.console)
			}
			if n, _ := strconv.Atoi(f[1]); n < len(shellCommands) {
				t.Errorf("shell saw %s entries in /bbin, want >= %d", f[1], len(shellCommands))
			}
		})
	}
}

// lineWith returns the first console line starting with prefix.
func lineWith(console, prefix string) string {
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, prefix); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

// TestCancel cancels a cold build with the shell: Build returns at once, and
// the abandoned busybox build cleans up after itself.
func TestCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the busybox")
	}
	cache := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	cancelAt := make(chan time.Time, 1)
	go func() {
		for {
			mu.Lock()
			started := strings.Contains(log.String(), "building the u-root shell")
			mu.Unlock()
			if started {
				time.Sleep(time.Second)
				cancelAt <- time.Now()
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, err := Build(ctx, Options{SourceDir: standInSource(t), CacheDir: cache, Shell: true, Log: w})
	canceled := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build after cancel: %v, want context.Canceled", err)
	}
	if d := canceled.Sub(<-cancelAt); d > 2*time.Second {
		t.Errorf("Build returned %v after the cancel", d)
	}
	// Wait for the abandoned build to finish and clean up.
	for {
		scratch, _ := os.ReadDir(filepath.Join(cache, "tmp"))
		left, _ := filepath.Glob(filepath.Join(cache, "layers", "*.tmp-*"))
		if len(scratch)+len(left) == 0 {
			break
		}
		if time.Since(canceled) > 5*time.Minute {
			t.Fatalf("abandoned build left %d scratch dirs and %v", len(scratch), left)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if shells, _ := filepath.Glob(filepath.Join(cache, "layers", "shell-*")); len(shells) != 0 {
		t.Errorf("cancelled build published %v", shells)
	}
}
