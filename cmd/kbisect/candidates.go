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
		Long:  help("candidates"),
		Args:  cobra.NoArgs,
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
