package kbuild

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kconfigs"
)

// oldTreeFixups is what the fixup table must select on the real trees of
// the seed's range with gcc 12, as verified by building and booting them
// (issue #8): every fixup whose broken construct the tree has.
var oldTreeFixups = map[kconfigs.Version][]string{
	kconfigs.V(3, 14, 5): {"compiler-gcc-header/1", "early-idt-stub-padding/1", "ld-max-page-size/1", "module-device-table-typeof/1",
		"module-plt32/1", "start-secondary-no-tail-call/1"},
	kconfigs.V(2, 6, 32): {"build-user-host/1", "compiler-gcc-header/1", "decompressor-no-sse/1", "early-idt-stub-padding/1", "ld-max-page-size/1",
		"make-mixed-rules/1", "module-device-table-typeof/1", "module-plt32/1", "start-secondary-no-tail-call/1", "timeconst-defined-array/1", "vdso-m64/1"},
}

// TestFixupsOnTrees runs the detectors on real old trees, read from git as
// kbisect's build planner does: KBISECT_OLD_TREES lists "repo@rev" entries
// separated by spaces, e.g. clones of the public snapshots
// github.com/chealy/linux-3.14.5-ims at cd075efe (plain 3.14.5) and
// github.com/zybsyzlz/linux-2.6.32 (2.6.32.2). CI has no old trees; TestFixupTable covers every fixup on
// fragments of them.
func TestFixupsOnTrees(t *testing.T) {
	list := os.Getenv("KBISECT_OLD_TREES")
	if list == "" {
		t.Skip("KBISECT_OLD_TREES not set: no old kernel trees to run the fixup detectors on")
	}
	ctx := context.Background()
	for _, ent := range strings.Fields(list) {
		dir, rev, ok := strings.Cut(ent, "@")
		if !ok {
			rev = "HEAD"
		}
		repo, err := gitrepo.Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		commit, err := repo.Resolve(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		tree := commitTree{ctx, repo, commit}
		mk, err := tree.ReadFile("Makefile")
		if err != nil {
			t.Fatal(err)
		}
		v, err := kconfigs.MakefileVersion(mk)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(v.String(), func(t *testing.T) {
			got, err := Select(Fixups, tree, FixupEnv{Version: v, GCCMajor: 12})
			if err != nil {
				t.Fatal(err)
			}
			want, known := oldTreeFixups[v]
			if !known {
				t.Logf("%s: no expectation for %v; selected %v", ent, v, FixupIDs(got))
				return
			}
			if g, w := strings.Join(FixupIDs(got), " "), strings.Join(want, " "); g != w {
				t.Errorf("%s (Linux %v): selected\n  %s\nwant\n  %s", ent, v, g, w)
			}
		})
	}
}
