// Package stages states kbisect's pipeline as data: which stage each
// package belongs to, in the order the design gives them,
//
//	kconfigs -> kbuild -> vmimage -> vm + netlab -> testcases -> lava -> bisect, validate
//
// and the commands and the demo on top. Its test checks, from `go list`,
// that no package imports one of a later stage. The shared helpers under
// internal/ belong to no stage: they import none.
package stages

import "strings"

// Module is the module path of kbisect.
const Module = "github.com/kbisect/kbisect"

// Order lists the stages, first to last, with the package path prefixes
// (relative to Module) that belong to each. A path belongs to the stage of
// its longest matching prefix.
var Order = []struct {
	Name     string
	Prefixes []string
}{
	{"helpers", []string{"internal/"}},
	{"kconfigs", []string{"kconfigs"}},
	{"kbuild", []string{"kbuild"}},
	{"vmimage", []string{"vmimage"}},
	{"vm+netlab", []string{"vm", "netlab"}},
	{"testcases", []string{"testcases"}},
	{"lava", []string{"lava"}},
	{"bisect+validate", []string{"bisect", "validate"}},
	{"commands", []string{"cmd/", "internal/demo", "internal/stages"}},
}

// Of returns the index in Order of the stage of the package at path (a
// full import path), or -1 for a path outside kbisect or outside every
// stage.
func Of(path string) int {
	rel, ok := strings.CutPrefix(path, Module+"/")
	if !ok {
		return -1
	}
	best, bestLen := -1, -1
	for i, st := range Order {
		for _, p := range st.Prefixes {
			match := rel == p || strings.HasPrefix(rel, strings.TrimSuffix(p, "/")+"/")
			if match && len(p) > bestLen {
				best, bestLen = i, len(p)
			}
		}
	}
	return best
}
