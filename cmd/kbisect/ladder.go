package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/internal/linuxsrc"
)

func newLadderCmd() *cobra.Command {
	var (
		out     string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "ladder SOURCE... -o REPO",
		Short: "Make a git history of kernel release trees, one commit per release, to bisect over",
		Long:  help("ladder"),
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("ladder: give the new repository's path with -o REPO")
			}
			// One line per tree on stderr: stdout keeps only the result.
			rungs, err := linuxsrc.Ladder(cmd.Context(), args, out, linuxsrc.LadderOptions{Log: os.Stderr})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), &linuxsrc.Made{Repo: out, Rungs: rungs}, jsonOut)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the new repository (must not exist)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the releases as JSON")
	return cmd
}
