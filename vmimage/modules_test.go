package vmimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// depmodDeps parses modules.dep on its own: module file -> its dependencies.
func depmodDeps(t *testing.T, dir string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		deps[k] = strings.Fields(v)
	}
	return deps
}

// TestModuleClosure resolves names against Debian's real modules dir and
// checks the result against modules.dep: complete, each module once, every
// module after all of its dependencies.
func TestModuleClosure(t *testing.T) {
	dir := debianModules(t)
	deps := depmodDeps(t, dir)
	rel := func(m moduleFile) string {
		return strings.TrimPrefix(m.target, "/lib/modules/"+filepath.Base(dir)+"/")
	}
	for _, tc := range []struct {
		name    string
		names   []string
		include []string // module names that must be in the result
		exclude []string
		empty   bool
		err     string
	}{
		{name: "esp4", names: []string{"esp4"}, include: []string{"esp4", "xfrm_algo"}},
		{name: "virtio_net", names: []string{"virtio_net"}, include: []string{"virtio_net", "virtio", "virtio_ring", "net_failover", "failover"}},
		{name: "dash spelling", names: []string{"ghash-generic"}, include: []string{"ghash_generic", "gf128mul"}},
		{name: "alias", names: []string{"crypto-rfc4106"}, include: []string{"gcm"}},
		{name: "built in", names: []string{"cbc", "hmac", "sha1_generic", "crypto-cbc"}, empty: true},
		{name: "default", names: DefaultModules, include: []string{
			"virtio_pci", "virtio_net", "xfrm_user", "xfrm_algo", "esp4", "authenc", "echainiv",
			"seqiv", "gcm", "ctr", "ghash_generic", "gf128mul", "ecb",
			"drbg", "jitterentropy_rng", "sha3_generic",
		}, exclude: AccelModules},
		{name: "runtime deps", names: []string{"seqiv"}, include: []string{"seqiv", "drbg", "jitterentropy_rng", "sha3_generic"}},
		{name: "accel", names: AccelModules, include: []string{"aesni_intel", "crypto_simd", "cryptd", "sha1_ssse3", "ghash_clmulni_intel"}},
		{name: "unknown", names: []string{"esp4", "no_such_module"}, err: `"no_such_module"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods, err := resolveModules(dir, tc.names)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.empty != (len(mods) == 0) {
				t.Errorf("got %d modules, want empty=%v", len(mods), tc.empty)
			}
			pos := map[string]int{}
			var names []string
			for i, m := range mods {
				r := rel(m)
				if _, dup := pos[r]; dup {
					t.Errorf("%s listed twice", r)
				}
				pos[r] = i
				names = append(names, moduleName(r))
				if _, ok := deps[r]; !ok {
					t.Errorf("%s not in modules.dep", r)
				}
				if !strings.HasSuffix(m.target, ".ko") || !exists(m.src) {
					t.Errorf("%s: target %s source %s", r, m.target, m.src)
				}
			}
			byName := map[string]string{}
			for r := range deps {
				byName[moduleName(r)] = r
			}
			for _, m := range mods {
				r := rel(m)
				need := slices.Clone(deps[r])
				for _, n := range runtimeDeps[moduleName(r)] {
					if d, ok := byName[n]; ok {
						need = append(need, d)
					}
				}
				for _, d := range need {
					p, ok := pos[d]
					if !ok {
						t.Errorf("%s needs %s, which is missing", r, d)
					} else if p > pos[r] {
						t.Errorf("%s (#%d) before its dependency %s (#%d)", r, pos[r], d, p)
					}
				}
			}
			for _, n := range tc.include {
				if !slices.Contains(names, n) {
					t.Errorf("%s missing from %v", n, names)
				}
			}
			for _, n := range tc.exclude {
				if slices.Contains(names, n) {
					t.Errorf("%s in %v", n, names)
				}
			}
		})
	}
}

// TestCompressedModules builds an image from a modules dir of .ko.xz,
// .ko.zst and .ko.gz files (Debian's real modules, compressed here) and
// checks the image holds them uncompressed, in load order.
func TestCompressedModules(t *testing.T) {
	real := debianModules(t)
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	type mod struct{ rel, comp string }
	mods := []mod{
		{"kernel/net/xfrm/xfrm_algo.ko", ".xz"},
		{"kernel/net/ipv4/esp4.ko", ".zst"},
		{"kernel/net/xfrm/xfrm_user.ko", ".gz"},
	}
	orig := map[string][]byte{}
	var dep strings.Builder
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(real, m.rel))
		if err != nil {
			t.Fatal(err)
		}
		orig[m.rel] = b
		var buf bytes.Buffer
		switch m.comp {
		case ".xz":
			w, _ := xz.NewWriter(&buf)
			w.Write(b)
			w.Close()
		case ".zst":
			w, _ := zstd.NewWriter(&buf)
			w.Write(b)
			w.Close()
		case ".gz":
			w := gzip.NewWriter(&buf)
			w.Write(b)
			w.Close()
		}
		p := filepath.Join(dir, m.rel+m.comp)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep.WriteString("kernel/net/xfrm/xfrm_algo.ko.xz:\n")
	dep.WriteString("kernel/net/ipv4/esp4.ko.zst: kernel/net/xfrm/xfrm_algo.ko.xz\n")
	dep.WriteString("kernel/net/xfrm/xfrm_user.ko.gz: kernel/net/xfrm/xfrm_algo.ko.xz\n")
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	img, err := Build(context.Background(), Options{SourceDir: standInSource(t), CacheDir: sharedCache(),
		ModulesDir: dir, Modules: []string{"esp4", "xfrm-user"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/modules/6.1.0-test/kernel/net/xfrm/xfrm_algo.ko",
		"/lib/modules/6.1.0-test/kernel/net/ipv4/esp4.ko",
		"/lib/modules/6.1.0-test/kernel/net/xfrm/xfrm_user.ko",
	}
	if !slices.Equal(img.Modules, want) {
		t.Errorf("Modules = %v\nwant      %v", img.Modules, want)
	}
	files, n := readImage(t, img.Path)
	if n != 2 {
		t.Errorf("%d archives, want 2 (agent, modules)", n)
	}
	for _, m := range mods {
		e, ok := files["lib/modules/6.1.0-test/"+m.rel]
		if !ok {
			t.Errorf("%s not in image", m.rel)
			continue
		}
		if !bytes.Equal(e.data, orig[m.rel]) {
			t.Errorf("%s: %d bytes in image, want the %d uncompressed bytes", m.rel, len(e.data), len(orig[m.rel]))
		}
	}
}

// TestModulesWithoutBuiltinList resolves names in a modules dir without
// modules.builtin, as kernels before 2.6.33 install it: a name that is
// neither a module nor an alias is taken as built in instead of failing,
// and real modules still resolve with their dependencies.
func TestModulesWithoutBuiltinList(t *testing.T) {
	deb := debianModules(t)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(deb, "kernel"), filepath.Join(dir, "kernel")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"modules.dep", "modules.alias"} {
		data, err := os.ReadFile(filepath.Join(deb, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mods, err := resolveModules(dir, []string{"esp4", "not_a_module_here"})
	if err != nil {
		t.Fatalf("without modules.builtin: %v", err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, moduleName(m.target))
	}
	for _, n := range []string{"esp4", "xfrm_algo"} {
		if !slices.Contains(names, n) {
			t.Errorf("%s missing from %v", n, names)
		}
	}
	// Modules only newer kernels have are skipped when absent (3.14 has
	// modules.builtin but no echainiv or drbg; 3.2 no xfrm_algo module
	// and no SIMD SHA-256).
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/crypto/cbc.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/net/ipv4/esp4.ko:\n"), 0o644)
	if mods, err := resolveModules(dir, []string{"esp4", "echainiv", "drbg", "xfrm_algo", "sha256_ssse3"}); err != nil || len(mods) != 1 {
		t.Errorf("old kernel without echainiv/drbg/xfrm_algo/sha256_ssse3: %d modules, %v", len(mods), err)
	}
	// With the list, an unknown name is still an error.
	if _, err := resolveModules(deb, []string{"not_a_module_here"}); err == nil {
		t.Error("unknown module accepted in a dir with modules.builtin")
	}
}
