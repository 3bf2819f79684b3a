package kconfigs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGatesOnTrees checks the gate table against real kernel trees: in
// every tree listed in KBISECT_GATE_TREES (checked-out kernel source
// directories separated by ':', e.g. kbisect's own build checkouts of
// 2.6.32 and 3.14.5), a gated symbol the table keeps for the tree's version
// must be defined by its Kconfig files, and a required symbol it drops
// must not be (a dropped symbol that still exists means the boundary is too
// early), and no kept symbol may depend on a gated symbol the table drops
// (the boundary is too early the other way: 3.0's virtio under
// VIRTUALIZATION). Every ungated symbol of the built-in fragments must exist too.
// CI has no old trees; the fragment-level gate tests are TestForGates.
func TestGatesOnTrees(t *testing.T) {
	list := os.Getenv("KBISECT_GATE_TREES")
	if list == "" {
		t.Skip("KBISECT_GATE_TREES not set: no kernel trees to check the gates on")
	}
	for _, dir := range filepath.SplitList(list) {
		if gitDir, rev, ok := strings.Cut(dir, "@"); ok {
			dir = kconfigFiles(t, gitDir, rev)
		}
		v, err := TreeVersion(dir)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ReadKconfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(v.String(), func(t *testing.T) {
			keep, dropped := For(v, Defaults()...)
			xen, _ := Builtin("xen-guest")
			k2, d2 := For(v, xen)
			keep, dropped = append(keep, k2...), append(dropped, d2...)
			for _, s := range keep {
				_, gated := GateFor(s.Symbol)
				if !k.Defined(s.Symbol) && (gated || !s.Optional) {
					t.Errorf("%s: CONFIG_%s is kept for %v but the tree does not define it", dir, s.Symbol, v)
				}
			}
			if dep := needsDropped(k, keep, dropped); dep != "" {
				t.Errorf("%s: %s", dir, dep)
			}
			for _, s := range dropped {
				g, _ := GateFor(s.Symbol)
				// A symbol that exists but is dropped is fine when the gate
				// says it is no longer needed (e.g. VIRTUALIZATION, PVPANIC's
				// ACPI-only driver); report only gates whose Why claims the
				// symbol was added or removed at the boundary.
				if k.Defined(s.Symbol) && (strings.Contains(g.Why, "added") || strings.Contains(g.Why, "removed")) {
					t.Errorf("%s: CONFIG_%s is gated out for %v (%s, %s) but the tree defines it", dir, s.Symbol, v, g.Versions, g.Why)
				}
			}
		})
	}
}

// kconfigFiles extracts the top Makefile and every Kconfig file of rev in
// the git repository gitDir into a temporary directory.
func kconfigFiles(t *testing.T, gitDir, rev string) string {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("git", "--git-dir", gitDir, "archive", rev, "--", "Makefile", ":(glob)**/Kconfig*")
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s@%s: %v: %s", gitDir, rev, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	return dir
}

// needsDropped names the first required kept symbol that every definition of in
// tree k makes depend on a gated symbol the table drops: with everything
// else on, its dependencies hold, and with the dropped symbols off they do
// not.
func needsDropped(k *Kconfig, keep, dropped []Setting) string {
	all, without := NewConfig(), NewConfig()
	for name := range k.Syms {
		all.Set(name, "y")
		without.Set(name, "y")
	}
	var off []string
	for _, s := range dropped {
		if _, gated := GateFor(s.Symbol); gated {
			without.Set(s.Symbol, "n")
			off = append(off, s.Symbol)
		}
	}
	for _, s := range keep {
		if s.Optional {
			continue // may be lost (XEN_PVH without ACPI from 4.19): kbuild warns
		}
		ks := k.Syms[s.Symbol]
		if ks == nil || len(ks.Defs) == 0 {
			continue
		}
		blocked := 0
		for _, d := range ks.Defs {
			for _, dep := range d.Deps {
				if dep.Eval(all) > 0 && dep.Eval(without) == 0 {
					blocked++
					break
				}
			}
		}
		if blocked == len(ks.Defs) {
			d := ks.Defs[0]
			var by []string
			for _, o := range off {
				one := all.Clone()
				one.Set(o, "n")
				for _, dep := range d.Deps {
					if dep.Eval(one) == 0 {
						by = append(by, "CONFIG_"+o)
						break
					}
				}
			}
			return fmt.Sprintf("CONFIG_%s is kept but depends on %s, which the table drops (%s:%d)", s.Symbol, strings.Join(by, ", "), d.File, d.Line)
		}
	}
	return ""
}
