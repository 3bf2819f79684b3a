package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
)

// flagValues are the values shell completion offers for a flag, whatever
// the command (cobra's completion command writes the scripts).
var flagValues = map[string][]string{
	"test":       testcases.Names(),
	"crypto":     slices.Sorted(maps.Keys(proto.Suites)),
	"strategy":   {"bayes", "classic", "classic:5"},
	"topology":   {"direct", "nat"},
	"hypervisor": {testcases.HypervisorQEMU, testcases.HypervisorXen},
	"xen-guest":  {"pv", "pvh"},
	"find":       {bisect.FindRegression, bisect.FindFix},
	"unit":       {string(bisect.UnitRuns), string(bisect.UnitTime)},
	"executor":   {"local", "lava"},
	"pattern":    {"zero", "prng"},
}

// refFlags complete to the branches and tags of --repo.
var refFlags = []string{"good", "bad", "rev", "base"}

// addCompletions registers the completions of every command's flags.
func addCompletions(c *cobra.Command) {
	for name, vals := range flagValues {
		if c.Flags().Lookup(name) != nil {
			c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	for _, name := range refFlags {
		if c.Flags().Lookup(name) != nil {
			c.RegisterFlagCompletionFunc(name, completeRefs)
		}
	}
	for _, sub := range c.Commands() {
		addCompletions(sub)
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
	out, err := repo.Git(cmd.Context(), "for-each-ref", "--format=%(refname:short)", "refs/heads", "refs/tags")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var refs []string
	for _, r := range strings.Fields(out) {
		if strings.HasPrefix(r, prefix) {
			refs = append(refs, r)
		}
	}
	return refs, cobra.ShellCompDirectiveNoFileComp
}

// suggestFlag adds "did you mean --X?" to an unknown-flag error when one
// of the command's flags is within two edits of the one given.
func suggestFlag(cmd *cobra.Command, err error) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
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
