package validate

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/demo"
	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
)

// These tests run on the demo repository of internal/demo: a real 6.1
// history in which one commit injects a sporadic corruption of NAT-T ESP
// payloads. Patches are made the way a developer makes them (git revert,
// git commit, git format-patch) in scratch clones.

// scratch returns a sparse working clone of the demo repository at rev with
// paths checked out, committing as a fixed developer.
func scratch(t *testing.T, h *demo.History, rev string, paths ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "scratch")
	ctx := context.Background()
	steps := [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", h.Dir, dir},
		append([]string{"-C", dir, "sparse-checkout", "set", "--no-cone"}, paths...),
		{"-C", dir, "checkout", "--quiet", "--detach", rev},
		{"-C", dir, "config", "user.name", "A Developer"},
		{"-C", dir, "config", "user.email", "dev@example.invalid"},
	}
	for _, args := range steps {
		if _, err := runGit(ctx, "", nil, nil, args...); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// git runs git in dir for a test.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(context.Background(), dir, nil, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// formatPatches writes the last n commits of the scratch clone as patch
// files into a new directory.
func formatPatches(t *testing.T, dir string, n int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "patches")
	git(t, dir, "format-patch", "--quiet", "-o", out, "-"+strconv.Itoa(n))
	return out
}

// revertPatch is the patch that reverts the demo's culprit, made on Bad.
func revertPatch(t *testing.T, h *demo.History) string {
	t.Helper()
	dir := scratch(t, h, h.Bad, "/net/ipv4/esp4.c")
	git(t, dir, "revert", "--no-edit", h.Culprit)
	return formatPatches(t, dir, 1)
}

// editPatch is a patch made on Bad that changes one file with edit.
func editPatch(t *testing.T, h *demo.History, file, subject string, edit func([]byte) []byte) string {
	t.Helper()
	dir := scratch(t, h, h.Bad, "/"+file)
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edit(data), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "commit", "--quiet", "-a", "-m", subject)
	return formatPatches(t, dir, 1)
}

func onlyFile(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.patch"))
	if len(m) != 1 {
		t.Fatalf("%s holds %d patches, want 1", dir, len(m))
	}
	return m[0]
}

func TestBadInput(t *testing.T) {
	h, user := demoUser(t)
	before := repoState(t, user)
	empty := t.TempDir()
	notPatches := t.TempDir()
	os.WriteFile(filepath.Join(notPatches, "README"), []byte("hello\n"), 0o644)
	emptyMbox := filepath.Join(t.TempDir(), "empty.mbox")
	os.WriteFile(emptyMbox, nil, 0o644)
	notExec := filepath.Join(t.TempDir(), "test.sh")
	os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644)
	patches := revertPatch(t, h)
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"unknown base", Options{Base: "no-such-rev", Patches: patches, Exec: "true"}, `unknown revision "no-such-rev"`},
		{"missing patches", Options{Base: h.Bad, Patches: "/nonexistent/patches", Exec: "true"}, "no such file or directory, and not a REV..REV range"},
		{"empty patch dir", Options{Base: h.Bad, Patches: empty, Exec: "true"}, "no patches in " + empty},
		{"no patch files", Options{Base: h.Bad, Patches: notPatches, Exec: "true"}, "no patches in " + notPatches},
		{"empty mbox", Options{Base: h.Bad, Patches: emptyMbox, Exec: "true"}, "the series is empty"},
		{"empty range", Options{Base: h.Bad, Patches: h.Bad + ".." + h.Bad, Exec: "true"}, "the range holds no commits"},
		{"unknown range end", Options{Base: h.Bad, Patches: h.Good + "..nope", Exec: "true"}, `unknown revision "nope"`},
		{"exec not executable", Options{Base: h.Bad, Patches: patches, Exec: notExec}, "is not executable"},
		{"exec path missing", Options{Base: h.Bad, Patches: patches, Exec: "/nonexistent/test.sh --flag"}, "does not exist"},
		// Not a path: sh's to find; not found (127) is a host failure,
		// never a verdict.
		{"exec not found", Options{Base: h.Bad, Patches: patches, Exec: "no-such-command --flag"}, "exited 127"},
		{"no test", Options{Base: h.Bad, Patches: patches}, "give --test"},
		{"bad expect", Options{Base: h.Bad, Patches: patches, Exec: "true", Expect: "maybe"}, `--expect "maybe"`},
		{"bad confidence", Options{Base: h.Bad, Patches: patches, Exec: "true", Confidence: 1.5}, "--confidence 1.5"},
		{"confidence nan", Options{Base: h.Bad, Patches: patches, Exec: "true", Confidence: math.NaN()}, "--confidence NaN"},
		{"tolerance nan", Options{Base: h.Bad, Patches: patches, Exec: "true", Tolerance: math.NaN()}, "--tolerance NaN"},
		{"not a repository", Options{Repo: t.TempDir(), Base: "HEAD", Patches: patches, Exec: "true"}, "is not a git repository"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.Repo == "" {
				o.Repo = user
			}
			_, err := Validate(context.Background(), o)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line saying %q", err, tc.want)
			}
		})
	}
	if after := repoState(t, user); after != before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestPatchDoesNotApply(t *testing.T) {
	h, user := demoUser(t)
	before := repoState(t, user)
	revert := revertPatch(t, h)
	// The same revert twice: the second finds the code already reverted.
	twice := t.TempDir()
	data, _ := os.ReadFile(onlyFile(t, revert))
	os.WriteFile(filepath.Join(twice, "0001-revert.patch"), data, 0o644)
	os.WriteFile(filepath.Join(twice, "0002-revert-again.patch"), data, 0o644)
	cases := []struct {
		name, base, patches string
		index               int // of the patch that fails, from 1
		patchName           string
	}{
		{"revert on a base without the bug", h.Good, revert, 1, filepath.Base(onlyFile(t, revert))},
		{"second patch of a series", h.Bad, twice, 2, "0002-revert-again.patch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Validate(context.Background(), Options{Repo: user, Base: tc.base, Patches: tc.patches, Exec: "true"})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Conclusion != DoesNotApply {
				t.Fatalf("conclusion %q, want %q", rep.Conclusion, DoesNotApply)
			}
			for _, r := range rep.Patches {
				switch {
				case r.Index < tc.index && r.Applies != "yes":
					t.Errorf("patch %d: applies %q, want yes", r.Index, r.Applies)
				case r.Index == tc.index:
					if r.Applies != "no" || r.Conclusion != DoesNotApply || r.Name != tc.patchName {
						t.Errorf("patch %d: %q applies %q, %q; want %q, no, %q", r.Index, r.Name, r.Applies, r.Conclusion, tc.patchName, DoesNotApply)
					}
					for _, want := range []string{tc.patchName, `Revert "esp4: recheck the TCP payload`, "net/ipv4/esp4.c"} {
						if !strings.Contains(r.Detail, want) {
							t.Errorf("detail %q does not name %q", r.Detail, want)
						}
					}
					if !strings.HasPrefix(r.ApplyError, "net/ipv4/esp4.c") {
						t.Errorf("apply error %q does not start with the file", r.ApplyError)
					}
				}
				if r.Tested || r.Runs > 0 {
					t.Errorf("patch %d was tested although the series does not apply", r.Index)
				}
			}
		})
	}
	if after := repoState(t, user); after != before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestSeriesInputs validates the demo's first commits up to the culprit,
// given as a directory, an mbox and a range, on the base before them, with
// a command that fails when the bug is in the tree: the tip is a
// regression, made of the same commits whatever the input, with the
// culprit's tree; with --each every harmless prefix is no regression.
func TestSeriesInputs(t *testing.T) {
	h, user := demoUser(t)
	before := repoState(t, user)
	var n int
	for i, c := range h.Commits {
		if c == h.Culprit {
			n = i + 1
		}
	}
	dir := filepath.Join(t.TempDir(), "series")
	git(t, user, "format-patch", "--quiet", "-o", dir, h.Good+".."+h.Culprit)
	mbox := filepath.Join(t.TempDir(), "series.mbox")
	out := git(t, user, "format-patch", "--stdout", h.Good+".."+h.Culprit)
	os.WriteFile(mbox, []byte(out+"\n"), 0o644)
	const test = "! grep -q esp_natt_sample_payload net/ipv4/esp4.c"
	var tips []string
	for _, tc := range []struct {
		name, patches string
		each          bool
	}{
		{"directory", dir, false},
		{"mbox", mbox, false},
		{"range", h.Good + ".." + h.Culprit, false},
		{"range, each", h.Good + ".." + h.Culprit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			budget := 10 * time.Second
			if tc.each {
				budget = time.Duration(n) * 1500 * time.Millisecond
			}
			rep, err := Validate(context.Background(), Options{
				Repo: user, Base: h.Good, Patches: tc.patches, Exec: test,
				Expect: ExpectNoRegression, Budget: budget, Each: tc.each,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Patches) != n {
				t.Fatalf("%d patches, want %d", len(rep.Patches), n)
			}
			tip := rep.Patches[n-1]
			if tip.Conclusion != Regression || tip.Failures == 0 || tip.Probability < 0.99 {
				t.Errorf("tip: %q (%s), want regression", tip.Conclusion, tip.Detail)
			}
			if got, want := git(t, rep.Workspace, "rev-parse", tip.Commit+"^{tree}"), git(t, user, "rev-parse", h.Culprit+"^{tree}"); got != want {
				t.Errorf("tip tree %s, want the culprit's %s", got, want)
			}
			if rep.BaseResult.Failures != 0 || rep.BaseResult.Runs == 0 {
				t.Errorf("base: %d of %d runs failed, want runs and none failed", rep.BaseResult.Failures, rep.BaseResult.Runs)
			}
			for _, r := range rep.Patches[:n-1] {
				if tc.each && r.Conclusion != NoRegression {
					t.Errorf("patch %d (%s): %q (%s), want no regression", r.Index, r.Subject, r.Conclusion, r.Detail)
				}
				if !tc.each && r.Tested {
					t.Errorf("patch %d tested without --each", r.Index)
				}
			}
			if tc.name == "range" && !strings.HasPrefix(h.Culprit, tip.Name) {
				t.Errorf("tip named %q, want the culprit's short hash", tip.Name)
			}
			if tip.Subject != "esp4: recheck the TCP payload of NAT-T transport packets once a second" {
				t.Errorf("tip subject %q", tip.Subject)
			}
			tips = append(tips, tip.Commit)
		})
	}
	for _, c := range tips[1:] {
		if c != tips[0] {
			t.Errorf("tips %v: the same series must make the same commits", tips)
		}
	}
	if after := repoState(t, user); after != before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestHarmlessPatchNoRegression(t *testing.T) {
	h, user := demoUser(t)
	before := repoState(t, user)
	patches := editPatch(t, h, "README", "README: mention kbisect", func(b []byte) []byte {
		return append(b, "\nValidated with kbisect.\n"...)
	})
	rep, err := Validate(context.Background(), Options{
		Repo: user, Base: h.Bad, Patches: patches, Expect: ExpectNoRegression, Budget: 8 * time.Second,
		Exec: "grep -q esp_input_done2 net/ipv4/esp4.c && test -s README",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Patches[0]
	if r.Conclusion != NoRegression || r.Failures != 0 || r.Runs < 10 {
		t.Errorf("%q after %d runs (%d failed): %s; want no regression", r.Conclusion, r.Runs, r.Failures, r.Detail)
	}
	if r.Files[0] != "README" || len(r.Files) != 1 {
		t.Errorf("touched files %v, want [README]", r.Files)
	}
	if rep.BaseResult.Failures != 0 || rep.BaseResult.Runs == 0 {
		t.Errorf("base: %d of %d runs failed, want runs that pass", rep.BaseResult.Failures, rep.BaseResult.Runs)
	}
	if after := repoState(t, user); after != before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// kernelOptions is the kernel test of the demo: tinyconfig with kbisect's
// fragments, natt-esp on a direct wire.
func kernelOptions(t *testing.T, duration time.Duration) *testcases.CommitTest {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	if testing.Short() {
		t.Skip("builds and boots kernels")
	}
	return &testcases.CommitTest{
		Build:   kbuild.Options{Config: "tinyconfig", Fragments: demoFragments(t)},
		Run:     testcases.Options{Test: "natt-esp", Duration: duration, Topology: "direct", InjectOffset: -1},
		RunRoot: t.TempDir(),
	}
}

// TestRevertFixes validates the revert of the culprit on the demo's bad
// commit with the real kernel test: the base fails, the reverted kernel
// passes long enough for P(fixed) >= 0.95 (0.99, the default, takes about
// twice the runs: 4 minutes here; TestFixCalibration covers it).
func TestRevertFixes(t *testing.T) {
	h, user := demoUser(t)
	kt := kernelOptions(t, 20*time.Second)
	before := repoState(t, user)
	rep, err := Validate(context.Background(), Options{
		Repo: user, Base: h.Bad, Patches: revertPatch(t, h), Kernel: kt, Budget: 10 * time.Minute, Confidence: 0.95, Log: testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, r := rep.BaseResult, rep.Patches[0]
	t.Logf("base: %d/%d failed in %.2f min, %.0f/h [%.0f, %.0f]; patched: %d runs, %.2f min, P(fixed) %.4f; %.1f min spent",
		b.Failures, b.Runs, b.Exposure, b.Rate, b.RateLow, b.RateHigh, r.Runs, r.Exposure, r.Probability, rep.SpentSeconds/60)
	if b.Failures == 0 {
		t.Fatalf("the base never failed: %+v", b.Evidence)
	}
	if r.Conclusion != Fixes || r.Probability < 0.95 || r.Failures != 0 {
		t.Errorf("revert: %q, P %.4f, %d failures (%s): want fixes with P >= 0.95", r.Conclusion, r.Probability, r.Failures, r.Detail)
	}
	if want := PFixed(b.Evidence, r.Evidence, DefaultPriorFix); r.Probability != want {
		t.Errorf("reported P(fixed) %.4f, the evidence gives %.4f", r.Probability, want)
	}
	if r.Boots != "yes" || r.Build == nil || !r.Build.OK || len(r.Build.Warnings) != 0 {
		t.Errorf("revert: boots %q, build %+v: want a clean build that boots", r.Boots, r.Build)
	}
	if after := repoState(t, user); after != before {
		t.Errorf("the user's repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestBuildBreak validates a patch that breaks the build (and adds a
// warning, which gcc still reports after the #error): it is reported with
// the compiler's error and the new warning, and nothing is run.
func TestBuildBreak(t *testing.T) {
	h, user := demoUser(t)
	kt := kernelOptions(t, 10*time.Second)
	patches := editPatch(t, h, "net/ipv4/esp4.c", "esp4: break the build", func(b []byte) []byte {
		return append(append([]byte("#error kbisect\n"), b...), "static int kbisect_unused(void) { return 0; }\n"...)
	})
	rep, err := Validate(context.Background(), Options{Repo: user, Base: h.Bad, Patches: patches, Kernel: kt, Budget: time.Minute, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Patches[0]
	if r.Conclusion != DoesNotBuild || r.Build == nil || r.Build.OK {
		t.Fatalf("%q, build %+v: want does not build", r.Conclusion, r.Build)
	}
	if !strings.HasPrefix(r.Build.Error, "net/ipv4/esp4.c:1:") || !strings.Contains(r.Build.Error, "#error kbisect") {
		t.Errorf("build error %q does not quote the compiler's error in net/ipv4/esp4.c", r.Build.Error)
	}
	if len(r.Build.Warnings) != 1 || r.Build.Warnings[0].File != "net/ipv4/esp4.c" || !strings.Contains(r.Build.Warnings[0].Message, "kbisect_unused") {
		t.Errorf("new warnings %v, want the one about kbisect_unused in net/ipv4/esp4.c", r.Build.Warnings)
	}
	if r.Runs > 0 || rep.BaseResult.Runs > 0 {
		t.Errorf("%d patched and %d base runs: nothing should run when the patch does not build", r.Runs, rep.BaseResult.Runs)
	}
}

// testLog sends progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
