// Package cliflags holds what kbisect's commands do with their flags
// beyond parsing them: shell completion of their values, "did you mean"
// for a mistyped one, and flags given back as arguments that parse again,
// secrets left out.
package cliflags

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// AddCompletions registers, on c and every command below it, the shell
// completions of the flags it has: the fixed values of values (by flag
// name), and for the flags named in refs the branches and tags of the
// command's --repo (cobra's completion command writes the scripts).
func AddCompletions(c *cobra.Command, values map[string][]string, refs []string) {
	for name, vals := range values {
		if c.Flags().Lookup(name) != nil {
			c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	for _, name := range refs {
		if c.Flags().Lookup(name) != nil {
			c.RegisterFlagCompletionFunc(name, completeRefs)
		}
	}
	for _, sub := range c.Commands() {
		AddCompletions(sub, values, refs)
	}
}

// completeRefs offers the branches and tags of the command's --repo.
func completeRefs(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	dir := "."
	if f := cmd.Flags().Lookup("repo"); f != nil {
		dir = f.Value.String()
	}
	repo, err := gitrepo.Open(cmd.Context(), dir)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	all, err := repo.Refs(cmd.Context(), "", "refs/heads", "refs/tags")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var refs []string
	for _, r := range all {
		if strings.HasPrefix(r, prefix) {
			refs = append(refs, r)
		}
	}
	return refs, cobra.ShellCompDirectiveNoFileComp
}

// SuggestFlag is a cobra flag error function: it adds "did you mean --X?"
// to an unknown-flag error when one of the command's visible flags is
// within two edits of the one given, and the help to read when none is.
func SuggestFlag(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	}
	return fmt.Errorf("%w: did you mean --%s?", err, best)
}

// editDistance is the Levenshtein distance of a and b (flag names: short,
// so the plain dynamic programme).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// secretAnnotation marks a flag whose value is a secret: it is never
// written into a job directory, a report or a log (see Args).
const secretAnnotation = "kbisect-secret"

// MarkSecret marks the flag name of fl as a secret, which Args leaves out.
func MarkSecret(fl *pflag.FlagSet, name string) {
	fl.SetAnnotation(name, secretAnnotation, []string{"true"})
}

// isSecret says whether fl's value is a secret (see MarkSecret).
func isSecret(fl *pflag.Flag) bool {
	_, ok := fl.Annotations[secretAnnotation]
	return ok
}

// Args returns those of the flags named that were given on the command
// line, in names' order, as arguments that parse back (--name=value; a
// slice flag once per value), but for secrets, which are never stored.
func Args(f *pflag.FlagSet, names []string) []string {
	var out []string
	for _, n := range names {
		fl := f.Lookup(n)
		if fl == nil || !fl.Changed || isSecret(fl) {
			continue
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+n+"="+v)
			}
			continue
		}
		out = append(out, "--"+n+"="+fl.Value.String())
	}
	return out
}
