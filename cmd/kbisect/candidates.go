package main

import (
	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/validate"
)

func newCandidatesCmd() *cobra.Command {
	var (
		repo    string
		o       validate.CandidateOptions
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "candidates --repo R --from A --to B [--path P ...] [--by file|dir|hunk] -o DIR",
		Short: "Split the difference between two commits into candidate patches to validate one by one",
		Long: `candidates writes the difference between --from and --to as patches that apply
on --from, one per file (or per directory, or per hunk), each turning
--from's version of its files into --to's. When a bisection ends between two
releases whose history is not at hand (a ladder), validate each candidate on
the bad release: a candidate revert that makes the bug go away (--from the
bad release, --to the good one) or a candidate backport that fixes it
(--from the broken release, --to the fixed one) at the confidence asked is
the change to look at. A change that builds only with its neighbours (a new
function and its callers) is found by splitting --by hunk and validating the
patches as a series with --each: the first prefix that fixes the bug ends
with the hunk that does.

  kbisect candidates --repo ladder.git --from v3.19.0 --to v4.0.0 \
      --path arch/x86/kernel --path arch/x86/include/asm -o /tmp/cands
  kbisect validate --repo ladder.git --base v3.19.0 --patches /tmp/cands/0001-arch-x86-kernel.patch ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := gitrepo.Open(cmd.Context(), repo)
			if err != nil {
				return err
			}
			cands, err := validate.Candidates(cmd.Context(), r, o)
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(cmd.OutOrStdout(), cands)
			}
			validate.WriteCandidates(cmd.OutOrStdout(), cands)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&repo, "repo", ".", "git repository (only read)")
	f.StringVar(&o.From, "from", "", "the commit the patches apply to")
	f.StringVar(&o.To, "to", "", "the commit whose version of the files they bring")
	f.StringArrayVar(&o.Paths, "path", nil, "limit to this path (repeatable)")
	f.StringVar(&o.By, "by", "file", "one candidate per file, dir, or hunk (hunks in file order: validate them as a series with --each)")
	f.StringVarP(&o.Dir, "output", "o", "", "new directory for the patches")
	f.BoolVar(&jsonOut, "json", false, "print the candidates as JSON")
	return cmd
}
