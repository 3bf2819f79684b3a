package kbuild

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kconfigs"
)

// oldTreeFixups is what the fixup table must select on real trees with
// gcc 12, as verified by building and booting them: the seed's two
// (issue #8) and the releases of the ladder matrix (README, "A release
// ladder"): every fixup whose broken construct the tree has. Some depend
// on the snapshot, not only the release: the ladder's 2.6.38
// (github.com/zekezang/linux-2.6.38 at 9e03466d) has a build's
// include/config/ committed.
var oldTreeFixups = map[kconfigs.Version][]string{
	kconfigs.V(2, 6, 32): {"acpi-os-initialize-init/1", "build-user-host/1", "compiler-gcc-header/1", "decompressor-no-sse/1", "early-idt-stub-padding/1",
		"firmware-dirs-addprefix/1", "ld-max-page-size/1", "make-mixed-rules/1", "module-device-table-typeof/1", "module-plt32/1", "rdtsc-barrier-always-inline/1",
		"start-secondary-no-tail-call/1", "timeconst-defined-array/1", "vdso-m64/1", "vendor-s3c-adc-arm-only/1", "xen-callback-end-name/1"},
	kconfigs.V(2, 6, 35): {"acpi-os-initialize-init/1", "build-user-host/1", "compiler-gcc-header/1", "decompressor-no-sse/1", "early-idt-stub-padding/1",
		"firmware-dirs-addprefix/1", "ld-max-page-size/1", "make-mixed-rules/1", "module-device-table-typeof/1", "module-plt32/1", "start-secondary-no-tail-call/1",
		"timeconst-defined-array/1", "vdso-m64/1", "xen-callback-end-name/1"},
	kconfigs.V(2, 6, 38): {"acpi-os-initialize-init/1", "build-user-host/1", "compiler-gcc-header/1", "decompressor-no-sse/1", "early-idt-stub-padding/1",
		"ld-max-page-size/1", "module-device-table-typeof/1", "module-plt32/1", "srctree-build-products/1", "start-secondary-no-tail-call/1",
		"timeconst-defined-array/1", "xen-callback-end-name/1"},
	kconfigs.V(3, 0, 0): v30to38Fixups,
	kconfigs.V(3, 2, 4): v30to38Fixups,
	kconfigs.V(3, 4, 2): v30to38Fixups,
	kconfigs.V(3, 8, 0): v30to38Fixups,
	kconfigs.V(3, 10, 99): {"compiler-gcc-header/1", "ld-max-page-size/1", "module-device-table-typeof/1", "module-plt32/1",
		"start-secondary-no-tail-call/1"},
	kconfigs.V(3, 14, 5): {"compiler-gcc-header/1", "early-idt-stub-padding/1", "ld-max-page-size/1", "module-device-table-typeof/1",
		"module-plt32/1", "start-secondary-no-tail-call/1"},
	kconfigs.V(3, 18, 9): {"compiler-gcc-header/1", "early-idt-stub-padding/1", "ld-max-page-size/1", "module-plt32/1",
		"start-secondary-no-tail-call/1"},
	kconfigs.V(4, 4, 121): {"ld-max-page-size/1", "module-plt32/1", "start-secondary-no-tail-call/1"},
	kconfigs.V(4, 9, 0):   {"ld-max-page-size/1", "module-plt32/1", "objtool-empty-object/1", "subcmd-xrealloc/1"},
	kconfigs.V(4, 14, 5):  {"ld-max-page-size/1", "module-plt32/1", "objtool-empty-object/1", "selinux-kernel-socket-h/1", "subcmd-xrealloc/1"},
	kconfigs.V(4, 19, 78): v419to54Fixups,
	kconfigs.V(5, 4, 0):   v419to54Fixups,
	kconfigs.V(5, 10, 7):  {"objtool-empty-object/1", "subcmd-xrealloc/1"},
}

var (
	v30to38Fixups = []string{"acpi-os-initialize-init/1", "compiler-gcc-header/1", "decompressor-no-sse/1", "early-idt-stub-padding/1",
		"ld-max-page-size/1", "module-device-table-typeof/1", "module-plt32/1", "start-secondary-no-tail-call/1", "timeconst-defined-array/1"}
	v419to54Fixups = []string{"boot-force-order-once/1", "objtool-empty-object/1", "subcmd-xrealloc/1"}
)

// TestFixupsOnTrees runs the detectors on real old trees, read from git as
// kbisect's build planner does: KBISECT_OLD_TREES lists "repo@rev" entries
// separated by spaces, e.g. clones of the public snapshots
// github.com/chealy/linux-3.14.5-ims at cd075efe (plain 3.14.5) and
// github.com/zybsyzlz/linux-2.6.32 (2.6.32.2), or the tags of a ladder
// ("LADDER@v3.2.4 LADDER@v4.19.78 ..."). CI has no old trees;
// TestFixupTable covers every fixup on fragments of them.
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
