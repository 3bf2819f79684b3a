package vmimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// DefaultModules are the modules the natt-esp test needs on a modular kernel
// (Options.Modules when ModulesDir is set and Modules is nil): the guest NIC,
// XFRM's netlink interface, ESP, and the crypto behind the four suites
// (cbc(aes)+hmac(sha1|sha256), rfc4106(gcm(aes)), ecb(cipher_null)+hmac(sha1)).
// ESP names its algorithms as templates (echainiv(authenc(hmac(sha1),cbc(aes))),
// seqiv(rfc4106(gcm(aes)))): the kernel would ask modprobe for the missing
// pieces, and the initramfs has no modprobe, so every piece is named here or
// in runtimeDeps. Names built into the kernel (on Debian 6.1: cbc, hmac,
// sha1_generic, sha256_generic, aes_generic, crypto_null) are skipped, so the
// list also serves kernels that build them as modules.
var DefaultModules = []string{
	"virtio_pci", "virtio_net",
	"xfrm_user", "esp4",
	"authenc", "echainiv", "seqiv", "drbg",
	"cbc", "ecb", "ctr", "gcm", "ghash_generic",
	"aes_generic", "hmac", "sha1_generic", "sha256_generic", "crypto_null",
}

// runtimeDeps are modules a module needs at run time without modules.dep
// knowing: the kernel asks for them by algorithm name (request_module, which
// needs a modprobe the initramfs does not have). When present as modules they
// are loaded before the module that needs them.
var runtimeDeps = map[string][]string{
	// The IV generators draw their salt from the default RNG, "stdrng"
	// (drbg): without it every echainiv/seqiv SA fails with ENOENT.
	"echainiv": {"drbg"},
	"seqiv":    {"drbg"},
	// drbg seeds itself from the jitter RNG; its self-tests allocate
	// ctr(aes) and hmac(sha512) when drbg loads, and without them each
	// fails with a WARNING (an oops line in the console, a fail with
	// --fail-on-oops). Names built into the kernel are skipped.
	"drbg": {"jitterentropy_rng", "ctr", "sha512_generic"},
	// jitterentropy_rng (6.1.y) allocates sha3-256-generic in its init and
	// fails to load with ENOENT without it.
	"jitterentropy_rng": {"sha3_generic"},
	// gcm(aes) is built from ctr(aes) and ghash.
	"gcm": {"ctr", "ghash_generic"},
}

// newerModules are modules of DefaultModules, runtimeDeps and the
// testcases' lists that older kernels do not have at all (with the release that added them): where a modules dir knows
// them nowhere, they are skipped rather than an error. Older kernels use
// other code for the same job (eseqiv and krng/ansi_cprng before 4.2).
var newerModules = map[string]string{
	"echainiv":          "4.2",
	"drbg":              "3.17",
	"jitterentropy_rng": "3.17",
	"sha3_generic":      "4.10",
	"geniv":             "after 4.2 (split out of the AEAD core)",
	// The ladder's 3.2.4 from x86_64_defconfig stopped on xfrm_algo: it is
	// part of its XFRM core, not a module built in. The SIMD hashes came
	// after 2.6.32 (each release checked in the ladder's arch/x86/crypto).
	"xfrm_algo":           "3.5 (before, part of the XFRM core)",
	"sha1_ssse3":          "3.2",
	"sha256_ssse3":        "3.10",
	"ghash_clmulni_intel": "2.6.33",
}

// AccelModules are x86 implementations of the same algorithms (AES-NI, SSSE3/
// AVX SHA, PCLMUL GHASH). The kernel prefers them once loaded. Their init fails
// with ENODEV on a CPU without the instructions (QEMU's default qemu64 model),
// so a loader must treat ENODEV from them as "not available", not as an error.
// They are not in DefaultModules: add them deliberately, and measure.
var AccelModules = []string{"aesni_intel", "sha1_ssse3", "sha256_ssse3", "ghash_clmulni_intel"}

// kmod is one resolved kernel module file.
type kmod struct {
	rel  string // path relative to the modules dir, as in modules.dep
	deps []string
}

// moduleDB is what depmod wrote in a modules dir.
type moduleDB struct {
	dir     string
	byRel   map[string]*kmod
	byName  map[string]string // module name -> rel
	builtin map[string]bool   // module names built into the kernel
	// noBuiltinList is set when the dir has no modules.builtin (kernels
	// before 2.6.33 do not write it): a name found nowhere is then taken
	// as built in, and the guest's own checks name what is missing.
	noBuiltinList bool

	aliases        []aliasLine // loaded on first use
	builtinAliases map[string]bool
	aliasesLoaded  bool
}

type aliasLine struct{ pattern, module string }

// moduleName is the kernel's name for a module file: the base name without
// .ko and compression suffix, with '-' as '_'.
func moduleName(rel string) string {
	b := path.Base(rel)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normalizeName(b)
}

func normalizeName(n string) string { return strings.ReplaceAll(n, "-", "_") }

func loadModuleDB(dir string) (*moduleDB, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("modules dir %s: %w (point it at a depmod'ed /lib/modules/<release>)", dir, err)
	}
	defer f.Close()
	db := &moduleDB{dir: dir, byRel: map[string]*kmod{}, byName: map[string]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		rel, rest, ok := strings.Cut(line, ":")
		if !ok || rel == "" {
			continue
		}
		m := &kmod{rel: rel, deps: strings.Fields(rest)}
		db.byRel[rel] = m
		db.byName[moduleName(rel)] = rel
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			db.builtin[moduleName(l)] = true
		}
	} else {
		db.noBuiltinList = true
	}
	return db, nil
}

func (db *moduleDB) loadAliases() error {
	if db.aliasesLoaded {
		return nil
	}
	db.aliasesLoaded = true
	db.builtinAliases = map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(db.dir, "modules.alias")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "alias" {
				db.aliases = append(db.aliases, aliasLine{f[1], normalizeName(f[2])})
			}
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("read modules.alias: %w", err)
	}
	// modules.builtin.modinfo: NUL-separated "module.key=value".
	if b, err := os.ReadFile(filepath.Join(db.dir, "modules.builtin.modinfo")); err == nil {
		for _, e := range bytes.Split(b, []byte{0}) {
			_, kv, ok := strings.Cut(string(e), ".")
			if !ok {
				continue
			}
			if k, v, ok := strings.Cut(kv, "="); ok && k == "alias" {
				db.builtinAliases[v] = true
			}
		}
	}
	return nil
}

// lookup returns the modules that provide name (a module name or an alias such
// as "crypto-cbc"), none if it is built in.
func (db *moduleDB) lookup(name string) ([]string, error) {
	if rel, ok := db.byName[normalizeName(name)]; ok {
		return []string{rel}, nil
	}
	if db.builtin[normalizeName(name)] {
		return nil, nil
	}
	if err := db.loadAliases(); err != nil {
		return nil, err
	}
	var rels []string
	seen := map[string]bool{}
	for _, a := range db.aliases {
		match := a.pattern == name
		if !match && strings.ContainsAny(a.pattern, "*?[") {
			match, _ = path.Match(a.pattern, name)
		}
		if !match || seen[a.module] {
			continue
		}
		seen[a.module] = true
		if rel, ok := db.byName[a.module]; ok {
			rels = append(rels, rel)
		}
	}
	if len(rels) > 0 {
		return rels, nil
	}
	if db.builtinAliases[name] || db.noBuiltinList {
		return nil, nil
	}
	return nil, fmt.Errorf("kernel module %q: not in %s (neither a module, an alias nor built in)", name, db.dir)
}

// closure returns the module files (relative paths) to load for names, in
// load order: every module after all of its dependencies.
func (db *moduleDB) closure(names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(rel string, from string) error
	visit = func(rel, from string) error {
		switch state[rel] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel module %s: dependency cycle through %s", rel, from)
		}
		m, ok := db.byRel[rel]
		if !ok {
			return fmt.Errorf("kernel module %s (needed by %s): not listed in %s/modules.dep", rel, from, db.dir)
		}
		state[rel] = 1
		for _, d := range m.deps {
			if err := visit(d, rel); err != nil {
				return err
			}
		}
		for _, n := range runtimeDeps[moduleName(rel)] {
			if d, ok := db.byName[n]; ok {
				if err := visit(d, rel); err != nil {
					return err
				}
			}
		}
		state[rel] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		rels, err := db.lookup(n)
		if _, newer := newerModules[normalizeName(n)]; err != nil && newer {
			continue // an older kernel
		}
		if err != nil {
			return nil, err
		}
		for _, rel := range rels {
			if err := visit(rel, n); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

// moduleFile is one module as it goes into the image.
type moduleFile struct {
	src    string // host path
	target string // absolute in-image path, uncompressed .ko
	sum    [32]byte
}

// resolveModules computes the files to put in the image for names from the
// modules dir, in load order, with their content hashes.
func resolveModules(dir string, names []string) ([]moduleFile, error) {
	db, err := loadModuleDB(dir)
	if err != nil {
		return nil, err
	}
	rels, err := db.closure(names)
	if err != nil {
		return nil, err
	}
	release := filepath.Base(filepath.Clean(dir))
	out := make([]moduleFile, 0, len(rels))
	for _, rel := range rels {
		src := filepath.Join(dir, filepath.FromSlash(rel))
		sum, err := hashFile(src)
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", rel, err)
		}
		out = append(out, moduleFile{src: src, target: "/" + path.Join("lib/modules", release, plainKo(rel)), sum: sum})
	}
	return out, nil
}

// plainKo strips a compression suffix: the image holds uncompressed modules,
// which init_module and finit_module accept on every kernel.
func plainKo(rel string) string {
	for _, s := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(rel, ".ko"+s) {
			return strings.TrimSuffix(rel, s)
		}
	}
	return rel
}

// readModule returns the uncompressed contents of a module file.
func readModule(src string) ([]byte, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(src, ".ko.xz"):
		r, err = xz.NewReader(bytes.NewReader(b))
	case strings.HasSuffix(src, ".ko.zst"):
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b))
		if err == nil {
			defer d.Close()
			r = d
		}
	case strings.HasSuffix(src, ".ko.gz"):
		r, err = gzip.NewReader(bytes.NewReader(b))
	default:
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", src, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", src, err)
	}
	return out, nil
}

func hashFile(p string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
