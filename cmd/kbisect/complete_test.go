package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletion: flag values complete from the tables kbisect uses, and
// --good/--bad/--rev to the refs of --repo (a real git repository).
func TestCompletion(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", repo},
		{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one"},
		{"-C", repo, "tag", "v6.0"},
		{"-C", repo, "tag", "v6.1"},
		{"-C", repo, "tag", "other"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"run", "--test", ""}, []string{"natt-esp", "tcp"}, nil},
		{[]string{"run", "--crypto", ""}, []string{"cbc-aes-sha1", "gcm-aes", "null-sha1"}, nil},
		{[]string{"run", "--topology", ""}, []string{"direct", "nat"}, nil},
		{[]string{"bisect", "--hypervisor", ""}, []string{"qemu", "xen"}, nil},
		{[]string{"bisect", "--strategy", ""}, []string{"bayes", "classic"}, nil},
		{[]string{"bisect", "--repo", repo, "--good", "v6"}, []string{"v6.0", "v6.1"}, []string{"other", "main"}},
		{[]string{"test", "--repo", repo, "--rev", ""}, []string{"main", "other", "v6.0"}, nil},
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"__complete"}, tc.args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		got := strings.Fields(out.String())
		for _, w := range tc.want {
			if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
				t.Errorf("%v: completions %v lack %s", tc.args, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
				t.Errorf("%v: completions %v offer %s", tc.args, got, w)
			}
		}
	}
	// The script the README sources.
	root := newRootCmd()
	var script bytes.Buffer
	root.SetOut(&script)
	root.SetArgs([]string{"completion", "bash"})
	if err := root.Execute(); err != nil || !strings.Contains(script.String(), "__start_kbisect") {
		t.Errorf("completion bash: %v, %d bytes", err, script.Len())
	}
}

// TestFlagSuggestion: a mistyped flag gets the nearest one, a wild one
// the help to read.
func TestFlagSuggestion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bisect", "--confidnce", "0.9"}, "unknown flag: --confidnce: did you mean --confidence?"},
		{[]string{"run", "--topolgy", "nat"}, "did you mean --topology?"},
		{[]string{"test", "--confg", "x"}, "did you mean --config?"},
		{[]string{"run", "--zzzzzz"}, "unknown flag: --zzzzzz (see kbisect run --help)"},
	} {
		root := newRootCmd()
		root.SetArgs(tc.args)
		root.SetOut(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
