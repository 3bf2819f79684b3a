package stages

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"
)

// endToEnd are the tests that drive a later stage on purpose: LAVA runs
// reattached by a resumed bisection, validate on the demo's history. Only
// their test files import the later stage.
var endToEnd = map[[2]string]bool{
	{"lava", "bisect"}:            true,
	{"validate", "internal/demo"}: true,
}

// TestImportOrder lists every package of the module with `go list` and
// checks that none imports a package of a later stage (nor do their tests,
// but for the end-to-end tests above), and that every package belongs to
// a stage.
func TestImportOrder(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", "-test=false", Module+"/...")
	cmd.Dir = testenv.SourceDir(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		from := Of(p.ImportPath)
		if from < 0 {
			t.Errorf("%s belongs to no stage: add it to stages.Order", p.ImportPath)
			continue
		}
		tests := map[string]bool{}
		for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
			tests[imp] = true
		}
		for _, imp := range append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...) {
			to := Of(imp)
			if to < 0 && strings.HasPrefix(imp, Module+"/") {
				t.Errorf("%s imports %s, which belongs to no stage", p.ImportPath, imp)
			}
			// Helpers may be used by anyone; a helper uses only helpers.
			rel := [2]string{strings.TrimPrefix(p.ImportPath, Module+"/"), strings.TrimPrefix(imp, Module+"/")}
			if tests[imp] && endToEnd[rel] {
				continue
			}
			if to > from {
				t.Errorf("%s (stage %s) imports %s (later stage %s)", p.ImportPath, Order[from].Name, imp, Order[to].Name)
			}
		}
	}
	if n < 20 {
		t.Errorf("go list found only %d packages", n)
	}
}

func TestOf(t *testing.T) {
	for path, want := range map[string]string{
		Module + "/kbuild":             "kbuild",
		Module + "/vm/xenctl":          "vm+netlab",
		Module + "/vmimage":            "vmimage",
		Module + "/testcases/esp":      "testcases",
		Module + "/bisect/kernel":      "bisect+validate",
		Module + "/internal/fsutil":    "helpers",
		Module + "/internal/demo":      "commands",
		Module + "/cmd/kbisect-agent":  "commands",
		Module + "/internal/bisectrun": "helpers",
		Module + "/validate":           "bisect+validate",
		Module + "/kconfigs":           "kconfigs",
		Module + "/netlab":             "vm+netlab",
		Module + "/lava":               "lava",
		Module + "/internal/stages":    "commands",
		Module + "/internal/linuxsrc":  "helpers",
		Module + "/cmd/kbisect":        "commands",
		Module + "/testcases/agent":    "testcases",
	} {
		if i := Of(path); i < 0 || Order[i].Name != want {
			t.Errorf("Of(%s) = %d, want stage %s", path, i, want)
		}
	}
	if Of("github.com/spf13/cobra") != -1 || Of(Module+"/vmx") != -1 {
		t.Error("a path outside the stages has one")
	}
}
