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
		Long: `ladder makes a new bare git repository REPO whose history is the given kernel
trees in version order, one commit per tree, each tagged v<version> (as its
top Makefile says), master at the newest. A bisection can then run over
releases when the real history is not at hand: release snapshots, vendor
tarballs, distribution sources. Bisect between two tags to find the first
bad release, then narrow inside it with kbisect validate.

A SOURCE is a source tarball (.tar, .tar.gz, .tar.xz), a directory holding a
kernel tree, a git repository (its HEAD, or PATH@REV), or a directory of
such sources. The same trees always make the same commits.

  kbisect ladder ~/releases/ -o ~/ladder.git
  kbisect bisect --repo ~/ladder.git --good v2.6.32.2 --bad v3.14.5 --hypervisor xen ...`,
		Args: cobra.MinimumNArgs(1),
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
