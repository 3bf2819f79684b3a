package vmimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
)

// ModulePath is the Go module whose source Build compiles the agent from.
const ModulePath = "github.com/kbisect/kbisect"

// SourceEnv names the environment variable that gives the kbisect source
// tree when kbisect runs from elsewhere (a copied or installed binary).
const SourceEnv = "KBISECT_SOURCE"

// errNoSource says how to fix a missing SourceDir.
var errNoSource = errors.New("kbisect's source tree (the go.mod of " + ModulePath + "), which the guest agent is compiled from, is not above the executable or the working directory: run the kbisect of the tree (make build puts it in bin/), or set " + SourceEnv + " to the tree")

// findSourceDir returns $KBISECT_SOURCE, or walks up from the executable's
// directory, then from the working directory, to the directory whose go.mod
// declares ModulePath.
func findSourceDir() (string, error) {
	if d := os.Getenv(SourceEnv); d != "" {
		if !isModuleRoot(d) {
			return "", fmt.Errorf("%s=%s: no go.mod of %s there: set it to kbisect's source tree", SourceEnv, d, ModulePath)
		}
		return filepath.Abs(d)
	}
	var starts []string
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		starts = append(starts, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for {
			if isModuleRoot(d) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errNoSource
}

func isModuleRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && modfile.ModulePath(b) == ModulePath
}

// toolchain is the Go toolchain and the settings that change what it builds.
type toolchain struct {
	gobin string
	env   goEnv
}

type goEnv struct {
	GOVERSION    string
	GOROOT       string
	GOFLAGS      string
	GOEXPERIMENT string
	GOTOOLCHAIN  string
	GOWORK       string
	GOAMD64      string // the agent forces v1; the shell build inherits it
}

// findGo returns the go command: "go" on PATH, else /usr/local/go/bin/go.
func findGo() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	const fallback = "/usr/local/go/bin/go"
	if st, err := os.Stat(fallback); err == nil && !st.IsDir() {
		return fallback, nil
	}
	return "", errors.New("no Go toolchain found: put go on PATH or install it in /usr/local/go (kbisect compiles its guest agent)")
}

// loadToolchain asks the go command, run in the source dir, for its version
// and the settings that are part of the cache keys.
func loadToolchain(ctx context.Context, srcDir string) (*toolchain, error) {
	gobin, err := findGo()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, gobin, "env", "-json", "GOVERSION", "GOROOT", "GOFLAGS", "GOEXPERIMENT", "GOTOOLCHAIN", "GOWORK", "GOAMD64")
	cmd.Dir = srcDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s env in %s: %w: %s", gobin, srcDir, err, strings.TrimSpace(stderr.String()))
	}
	tc := &toolchain{gobin: gobin}
	if err := json.Unmarshal(out, &tc.env); err != nil {
		return nil, fmt.Errorf("%s env: %w", gobin, err)
	}
	return tc, nil
}

// hashAgentSource hashes what the agent binary is built from inside the
// module: every non-test file of the agent package and of each package of
// this module it imports (transitively, all build tags), plus files pulled in
// by //go:embed. Dependencies outside the module are covered by go.sum.
func hashAgentSource(h hash.Hash, srcDir, modPath, pkg string) error {
	if pkg != modPath && !strings.HasPrefix(pkg, modPath+"/") {
		return fmt.Errorf("agent package %s is not in module %s", pkg, modPath)
	}
	seen := map[string]bool{}
	queue := []string{pkg}
	var pkgs []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		pkgs = append(pkgs, p)
		dir := filepath.Join(srcDir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, modPath), "/")))
		imports, err := packageImports(dir)
		if err != nil {
			return fmt.Errorf("agent source %s: %w", p, err)
		}
		for _, imp := range imports {
			if imp == modPath || strings.HasPrefix(imp, modPath+"/") {
				queue = append(queue, imp)
			}
		}
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		dir := filepath.Join(srcDir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, modPath), "/")))
		fmt.Fprintf(h, "package %s\n", p)
		if err := hashPackageDir(h, dir); err != nil {
			return fmt.Errorf("agent source %s: %w", p, err)
		}
	}
	return nil
}

// packageImports lists the imports of the .go files (tests excluded) in dir.
func packageImports(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []string
	n := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		n++
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			return nil, err
		}
		for _, is := range f.Imports {
			if p, err := strconv.Unquote(is.Path.Value); err == nil {
				out = append(out, p)
			}
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	return out, nil
}

// hashPackageDir hashes the regular files of one package directory (not its
// subdirectories, which are other packages) except tests, plus the files its
// //go:embed directives name.
func hashPackageDir(h hash.Hash, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var embeds []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %s %d\n", name, len(b))
		h.Write(b)
		if strings.HasSuffix(name, ".go") {
			embeds = append(embeds, embedPatterns(b)...)
		}
	}
	sort.Strings(embeds)
	for _, pat := range embeds {
		matches, _ := filepath.Glob(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(pat, "all:"))))
		for _, m := range matches {
			err := filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				fmt.Fprintf(h, "embed %s\n", filepath.ToSlash(rel))
				_, err = io.Copy(h, f)
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// embedPatterns returns the patterns of the //go:embed lines in a Go file.
func embedPatterns(src []byte) []string {
	var out []string
	for _, line := range bytes.Split(src, []byte("\n")) {
		line = bytes.TrimSpace(line)
		rest, ok := bytes.CutPrefix(line, []byte("//go:embed "))
		if !ok {
			continue
		}
		for _, f := range strings.Fields(string(rest)) {
			if uq, err := strconv.Unquote(f); err == nil {
				f = uq
			}
			out = append(out, f)
		}
	}
	return out
}

// newKeyHash starts a cache key: a versioned kind, so a change in how a layer
// is built can invalidate old entries.
func newKeyHash(kind string) hash.Hash {
	h := sha256.New()
	fmt.Fprintf(h, "kbisect-vmimage %s %s\n", kind, layoutVersion)
	return h
}

func keyOf(h hash.Hash) string { return fmt.Sprintf("%x", h.Sum(nil))[:32] }
