package kconfigs

import (
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
// early). Every ungated symbol of the built-in fragments must exist too.
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
