// Package vmimage builds the initramfs the test guests boot: the kbisect guest
// agent as /init, optionally u-root's core commands for a debug shell, and,
// for modular kernels, the kernel modules a test needs with their
// dependencies, in load order.
//
// An image is a concatenation of newc cpio archives, which the kernel unpacks
// in turn (a later file replaces an earlier one):
//
//   - the agent layer: u-root's default ramfs skeleton (/dev/console,
//     /dev/null, /dev/urandom, /proc, /sys, /tmp, ...) and the agent, built
//     static (CGO_ENABLED=0, linux/amd64, GOAMD64=v1), stripped and trimmed,
//     as /init;
//   - the shell layer (Options.Shell): u-root's core commands as one gobusybox
//     binary /bbin/bb with a link per command, gosh as /bin/sh;
//   - the modules layer: the .ko files, uncompressed, under
//     /lib/modules/<release>/.
//
// Each layer and each finished image is cached by content hash under
// cachedir "images", so a change to the agent does not rebuild the busybox
// (30 s on an idle 2-core machine, up to 100 s on a busy one) and a cache hit
// costs 5-20 ms. Per-run files
// (the agent's params.json) go in one more small archive appended by
// WithFiles, without touching the cached image.
package vmimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/u-root/uio/llog"
)

// AgentPackage is the guest agent's main package, the default /init.
const AgentPackage = ModulePath + "/cmd/kbisect-agent"

// ShellPath is the debug shell in an image built with Options.Shell (also
// linked as /bin/sh). The kernel starts /init with no PATH: set
// PATH=/bbin:/bin for the shell so it finds the other commands.
const ShellPath = "/bbin/gosh"

// layoutVersion is part of every cache key: bump it when the way a layer is
// built changes.
const layoutVersion = "1"

// agentBuildFlags are the go build flags of the agent (also part of its key).
var agentBuildFlags = []string{"-trimpath", "-ldflags=-s -w -buildid="}

// agentEnv is the agent's build environment (also part of its key): static,
// and runnable on any x86-64 CPU model QEMU offers.
var agentEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1"}

// shellCommands are the u-root v0.16 core commands of the debug shell.
var shellCommands = []string{
	"gosh", "ls", "cat", "ip", "dmesg", "ps", "mount", "umount", "mkdir", "echo",
	"cp", "mv", "rm", "ln", "grep", "find", "free", "uname", "uptime", "sleep",
	"kill", "pwd", "hexdump", "head", "tail", "wc", "lsmod", "insmod", "rmmod",
	"netstat", "ping", "poweroff", "shutdown", "sync", "tee", "date", "df", "dd",
	"sort", "more", "readlink", "chmod", "mknod", "which", "cmp", "md5sum",
	"printenv", "true", "false", "pidof", "xargs", "tr",
}

// shellBuildTags: goshsmall leaves out gosh's bubbletea line editor
// (full-screen terminal handling, of little use on a serial console); the
// kernel's tty line discipline still gives basic line editing.
var shellBuildTags = []string{"goshsmall"}

// Options say what goes into an image.
type Options struct {
	// SourceDir is the root of the kbisect module source (the directory of
	// the go.mod of ModulePath). Empty: found by walking up from the
	// executable's directory, then from the working directory.
	SourceDir string
	// Agent is the import path of the main package run as /init, inside
	// the module. Empty means AgentPackage.
	Agent string
	// Shell adds u-root's core commands and gosh (ShellPath) for a debug
	// shell on the guest console.
	Shell bool
	// ModulesDir is a kernel's modules dir (/lib/modules/<release>, with
	// the files depmod writes) for a modular kernel. Empty: no modules.
	ModulesDir string
	// Modules are the modules (or aliases such as "crypto-gcm") to load
	// from ModulesDir; their dependencies are added. Nil with ModulesDir
	// set means DefaultModules.
	Modules []string
	// CacheDir holds built images. Empty means cachedir.Dir("images").
	CacheDir string
	// Log, if set, gets a line for each layer built (a cold build with
	// Shell takes 30-100 s).
	Log io.Writer
}

// Image is a built initramfs.
type Image struct {
	// Path is the cpio file to pass to QEMU's -initrd. It lives in the
	// cache: do not modify it (use WithFiles).
	Path string
	// Key is the image's content key (hex).
	Key string
	// Modules are the in-image paths of the kernel modules to load, in
	// load order (every module after its dependencies).
	Modules []string
	// Shell says the image has the debug shell.
	Shell bool
}

// layer is one cpio archive of an image.
type layer struct {
	kind  string
	key   string
	build func(ctx context.Context, tmp string) error
}

// Build returns the image for opts, from the cache or built now.
func Build(ctx context.Context, opts Options) (*Image, error) {
	p, err := plan(ctx, opts)
	if err != nil {
		return nil, err
	}
	if exists(p.img.Path) {
		return p.img, nil
	}
	o := p.opts
	sweep(o.CacheDir)
	var parts []string
	for _, l := range p.layers {
		lp := filepath.Join(o.CacheDir, "layers", l.kind+"-"+l.key+".cpio")
		parts = append(parts, lp)
		build, kind := l.build, l.kind
		err := ensure(ctx, o.CacheDir, lp, func(ctx context.Context, tmp string) error {
			start := time.Now()
			if err := build(ctx, tmp); err != nil {
				return err
			}
			o.logf("built %s layer in %.1fs", kind, time.Since(start).Seconds())
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	err = ensure(ctx, o.CacheDir, p.img.Path, func(ctx context.Context, tmp string) error {
		return concatFiles(tmp, parts)
	})
	if err != nil {
		return nil, err
	}
	return p.img, nil
}

// buildPlan is an image's key, its layers and the options with defaults.
type buildPlan struct {
	opts   Options
	img    *Image
	layers []layer
}

// plan fills in the defaults of opts and computes the keys of the image and
// its layers without building anything.
func plan(ctx context.Context, opts Options) (*buildPlan, error) {
	o := opts
	if o.SourceDir == "" {
		d, err := findSourceDir()
		if err != nil {
			return nil, err
		}
		o.SourceDir = d
	} else if !isModuleRoot(o.SourceDir) {
		return nil, fmt.Errorf("source dir %s: no go.mod of module %s there", o.SourceDir, ModulePath)
	}
	if o.Agent == "" {
		o.Agent = AgentPackage
	}
	if o.CacheDir == "" {
		o.CacheDir = cachedir.Dir("images")
	}
	if o.ModulesDir == "" && len(o.Modules) > 0 {
		return nil, fmt.Errorf("kernel modules %v asked for without a modules dir: give the kernel's /lib/modules/<release>", o.Modules)
	}
	if o.ModulesDir != "" && o.Modules == nil {
		o.Modules = DefaultModules
	}

	tc, err := loadToolchain(ctx, o.SourceDir)
	if err != nil {
		return nil, err
	}
	gomod, err := os.ReadFile(filepath.Join(o.SourceDir, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("source dir: %w", err)
	}
	gosum, err := os.ReadFile(filepath.Join(o.SourceDir, "go.sum"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("source dir: %w", err)
	}

	// Agent layer.
	ah := newKeyHash("agent")
	fmt.Fprintf(ah, "%+v\n%q %q %q\n", tc.env, o.Agent, agentBuildFlags, agentEnv)
	fmt.Fprintf(ah, "go.mod %d\n%s\ngo.sum %d\n%s\n", len(gomod), gomod, len(gosum), gosum)
	if err := hashAgentSource(ah, o.SourceDir, ModulePath, o.Agent); err != nil {
		return nil, err
	}
	layers := []layer{{kind: "agent", key: keyOf(ah), build: func(ctx context.Context, tmp string) error {
		return buildAgentLayer(ctx, o, tc, tmp)
	}}}

	// Shell layer.
	if o.Shell {
		sh := newKeyHash("shell")
		fmt.Fprintf(sh, "%+v\n%q %q\n", tc.env, shellCommands, shellBuildTags)
		fmt.Fprintf(sh, "go.mod %d\n%s\ngo.sum %d\n%s\n", len(gomod), gomod, len(gosum), gosum)
		layers = append(layers, layer{kind: "shell", key: keyOf(sh), build: func(ctx context.Context, tmp string) error {
			return buildShellLayer(ctx, o, tc, tmp)
		}})
	}

	// Modules layer.
	var mods []moduleFile
	if o.ModulesDir != "" {
		mods, err = resolveModules(o.ModulesDir, o.Modules)
		if err != nil {
			return nil, err
		}
	}
	if len(mods) > 0 {
		mh := newKeyHash("modules")
		for _, m := range mods {
			fmt.Fprintf(mh, "%s %x\n", m.target, m.sum)
		}
		layers = append(layers, layer{kind: "modules", key: keyOf(mh), build: func(ctx context.Context, tmp string) error {
			return buildModulesLayer(mods, tmp)
		}})
	}

	ih := newKeyHash("image")
	for _, l := range layers {
		fmt.Fprintf(ih, "%s %s\n", l.kind, l.key)
	}
	img := &Image{Key: keyOf(ih), Shell: o.Shell}
	img.Path = filepath.Join(o.CacheDir, img.Key+".cpio")
	for _, m := range mods {
		img.Modules = append(img.Modules, m.target)
	}
	return &buildPlan{opts: o, img: img, layers: layers}, nil
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "vmimage: "+format+"\n", args...)
	}
}

// uimageLogger sends mkuimage's log to o.Log at warning level and above.
func (o *Options) uimageLogger() *llog.Logger {
	return llog.New(slog.LevelWarn, func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "vmimage: mkuimage: "+strings.TrimSuffix(format, "\n")+"\n", args...)
		}
	})
}

// buildAgentLayer compiles the agent with go build (its own build cache keeps
// a rebuild after a small change to a few seconds) and archives it with
// mkuimage over u-root's default ramfs.
func buildAgentLayer(ctx context.Context, o Options, tc *toolchain, out string) error {
	scratch, err := scratchDir(o.CacheDir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	bin := filepath.Join(scratch, "init")
	args := append([]string{"build", "-o", bin}, agentBuildFlags...)
	args = append(args, o.Agent)
	cmd := exec.CommandContext(ctx, tc.gobin, args...)
	cmd.Dir = o.SourceDir
	cmd.Env = append(os.Environ(), agentEnv...)
	var outBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("build agent %s: %w\n%s", o.Agent, err, strings.TrimSpace(outBuf.String()))
	}
	tmpDir := filepath.Join(scratch, "uimage")
	if err := os.Mkdir(tmpDir, 0o755); err != nil {
		return err
	}
	err = uimage.Create(o.uimageLogger(),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithFiles(bin+":init"),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmpDir),
		uimage.WithCPIOOutput(out),
	)
	if err != nil {
		return fmt.Errorf("archive agent: %w", err)
	}
	return nil
}

// buildShellLayer builds u-root's core commands as one gobusybox binary with
// mkuimage. mkuimage cannot be cancelled: when ctx ends, the build is
// abandoned (it finishes in the background and cleans up after itself).
func buildShellLayer(ctx context.Context, o Options, tc *toolchain, out string) error {
	scratch, err := scratchDir(o.CacheDir)
	if err != nil {
		return err
	}
	o.logf("building the u-root shell commands (gobusybox, about 30 s; cached afterwards)")
	pkgs := make([]string, len(shellCommands))
	for i, c := range shellCommands {
		pkgs[i] = "github.com/u-root/u-root/cmds/core/" + c
	}
	env := golang.Default(
		golang.DisableCGO(),
		golang.WithGOOS("linux"),
		golang.WithGOARCH("amd64"),
		golang.WithGOROOT(tc.env.GOROOT),
		golang.WithCompiler(tc.gobin),
		golang.WithWorkingDir(o.SourceDir),
		golang.WithBuildTag(shellBuildTags...),
	)
	done := make(chan error, 1)
	go func() {
		done <- uimage.Create(o.uimageLogger(),
			uimage.WithReplaceEnv(env),
			uimage.WithBusyboxCommands(pkgs...),
			uimage.WithShell("gosh"),
			uimage.WithSkipLDD(),
			uimage.WithTempDir(scratch),
			uimage.WithCPIOOutput(out),
		)
	}()
	select {
	case err := <-done:
		os.RemoveAll(scratch)
		if err != nil {
			return fmt.Errorf("build u-root shell commands: %w", err)
		}
		return nil
	case <-ctx.Done():
		go func() {
			<-done
			os.RemoveAll(scratch)
			os.Remove(out)
		}()
		return ctx.Err()
	}
}

// buildModulesLayer archives the module files, uncompressed.
func buildModulesLayer(mods []moduleFile, out string) error {
	var files []archiveFile
	for _, m := range mods {
		b, err := readModule(m.src)
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", m.src, err)
		}
		files = append(files, archiveFile{name: m.target, data: b})
	}
	return writeArchiveFile(out, nil, files)
}

// archiveFile is a regular file for writeArchive.
type archiveFile struct {
	name string // absolute or relative in-image path
	data []byte
}

// writeArchive writes one newc archive of files (mode 0644) and their parent
// directories (0755).
func writeArchive(w io.Writer, files []archiveFile) error {
	cw := cpio.Newc.Writer(w)
	dirs := map[string]bool{}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean("/"+f.name), "/")
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := cw.WriteRecord(cpio.Directory(parents[i], 0o755)); err != nil {
				return err
			}
		}
		rec := cpio.StaticRecord(f.data, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644, NLink: 1})
		if err := cw.WriteRecord(rec); err != nil {
			return err
		}
	}
	return cpio.WriteTrailer(cw)
}

// writeArchiveFile writes the files prefix (concatenated, e.g. a base image)
// and then an archive of files to p.
func writeArchiveFile(p string, prefix []string, files []archiveFile) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for _, src := range prefix {
		if err := appendFile(f, src); err != nil {
			f.Close()
			return err
		}
	}
	if len(files) > 0 {
		if err := writeArchive(f, files); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return f.Close()
}

func appendFile(dst *os.File, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := io.Copy(dst, s); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// concatFiles writes the concatenation of parts to p.
func concatFiles(p string, parts []string) error {
	return writeArchiveFile(p, parts, nil)
}

// WithFiles writes to outPath the base image followed by an archive of files
// (in-image path -> contents, mode 0644, parent directories created), such as
// the agent's /kbisect/params.json. The base image is copied, not rebuilt.
// outPath is replaced atomically.
func WithFiles(ctx context.Context, base *Image, files map[string][]byte, outPath string) error {
	if base == nil || base.Path == "" {
		return fmt.Errorf("initramfs for %s: no base image", outPath)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		clean := strings.TrimPrefix(path.Clean("/"+n), "/")
		if n == "" || clean == "" || strings.Contains("/"+n+"/", "/../") {
			return fmt.Errorf("initramfs file name %q: want a path inside the image, like /kbisect/params.json", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	af := make([]archiveFile, len(names))
	for i, n := range names {
		af[i] = archiveFile{name: n, data: files[n]}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d-%d", outPath, os.Getpid(), time.Now().UnixNano())
	if err := writeArchiveFile(tmp, []string{base.Path}, af); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("initramfs %s: %w", outPath, err)
	}
	if err := os.Rename(tmp, outPath); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("initramfs %s: %w", outPath, err)
	}
	return nil
}
