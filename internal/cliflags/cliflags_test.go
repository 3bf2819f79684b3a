package cliflags

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"config", "config", 0},
		{"confg", "config", 1},         // a deletion
		{"configg", "config", 1},       // an insertion
		{"topolgy", "topology", 1},     // a deletion inside
		{"confidnce", "confidence", 1}, // the typo of TestFlagSuggestion
		{"kernel", "kernle", 2},        // a transposition is two edits
		{"run", "test", 4},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

// TestSuggestFlag: the nearest visible flag within two edits, the help to
// read when none is near, other errors as they are.
func TestSuggestFlag(t *testing.T) {
	cmd := &cobra.Command{Use: "tool", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().String("config", "", "")
	cmd.Flags().String("confidence", "", "")
	cmd.Flags().String("secret-knob", "", "")
	cmd.Flags().MarkHidden("secret-knob")
	cmd.SetFlagErrorFunc(SuggestFlag)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--confg", "x"}, "unknown flag: --confg: did you mean --config?"},
		{[]string{"--confidnce", "x"}, "did you mean --confidence?"},
		{[]string{"--secret-knb", "x"}, "unknown flag: --secret-knb (see tool --help)"},
		{[]string{"--zzzzzz"}, "unknown flag: --zzzzzz (see tool --help)"},
		{[]string{"--config"}, "flag needs an argument: --config"},
	} {
		cmd.SetArgs(tc.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	plain := errors.New("something else")
	if got := SuggestFlag(cmd, plain); got != plain {
		t.Errorf("SuggestFlag changed %v to %v", plain, got)
	}
}

// TestArgs: the flags given, in the order named, as arguments that parse
// back to the same values; flags left at their default, flags not named
// and secrets are left out.
func TestArgs(t *testing.T) {
	fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fl.String("config", "tinyconfig", "")
	fl.Duration("duration", 0, "")
	fl.StringArray("fragment", nil, "")
	fl.String("token", "", "")
	fl.Int("unnamed", 0, "")
	fl.Bool("capture", true, "")
	MarkSecret(fl, "token")
	names := []string{"capture", "config", "duration", "fragment", "token"}
	if err := fl.Parse([]string{"--fragment", "a b", "--token", "s3cret", "--config=my.config", "--fragment=c", "--unnamed", "3", "--capture=false"}); err != nil {
		t.Fatal(err)
	}
	got := Args(fl, names)
	want := []string{"--capture=false", "--config=my.config", "--fragment=a b", "--fragment=c"}
	if !slices.Equal(got, want) {
		t.Fatalf("Args = %q, want %q", got, want)
	}
	back := pflag.NewFlagSet("t", pflag.ContinueOnError)
	cfg := back.String("config", "tinyconfig", "")
	frags := back.StringArray("fragment", nil, "")
	capture := back.Bool("capture", true, "")
	if err := back.Parse(got); err != nil {
		t.Fatal(err)
	}
	if *cfg != "my.config" || !slices.Equal(*frags, []string{"a b", "c"}) || *capture {
		t.Errorf("parsed back: %q %q %v", *cfg, *frags, *capture)
	}
}

// TestAddCompletions: fixed values complete on the command that has the
// flag, at any depth (the shell filters them by what is typed); no file
// completion.
func TestAddCompletions(t *testing.T) {
	root := &cobra.Command{Use: "tool"}
	sub := &cobra.Command{Use: "sub", Run: func(*cobra.Command, []string) {}}
	sub.Flags().String("topology", "", "")
	root.AddCommand(sub)
	AddCompletions(root, map[string][]string{"topology": {"direct", "nat"}, "absent": {"x"}}, []string{"good"})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sub", "--topology", ""}, []string{"direct", "nat"}},
		{[]string{"sub", "--topology", "n"}, []string{"direct", "nat"}},
	} {
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"__complete"}, tc.args...))
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if !slices.Equal(lines[:len(lines)-1], tc.want) || lines[len(lines)-1] != ":4" {
			t.Errorf("%v: %q, want %q then :4 (no file completion)", tc.args, lines, tc.want)
		}
	}
}
