package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
)

func newMatrixCmd() *cobra.Command {
	var (
		f                  runFlags
		repo, tags, out    string
		revs, configs, hvs []string
		jobs               int
	)
	cmd := &cobra.Command{
		Use:   "matrix --repo R (--rev X ... | --tags GLOB) [--config C ...] [--hypervisors qemu,xen] [-o cells.jsonl]",
		Short: "Build and test many revisions (a release ladder) with several configs and hypervisors; print the table",
		Long:  help("matrix"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := gitrepo.Open(ctx, repo)
			if err != nil {
				return err
			}
			if tags != "" {
				list, err := r.Refs(ctx, "creatordate", "refs/tags/"+tags)
				if err != nil {
					return err
				}
				revs = append(revs, list...)
			}
			if len(revs) == 0 {
				return fmt.Errorf("no revisions: give --rev X (repeatable) or --tags GLOB")
			}
			m := &testcases.Matrix{Build: kbuild.Options{Repo: r.Dir, Jobs: jobs}, Hypervisors: hvs}
			for _, c := range configs {
				frags, err := kconfigs.SelectFor(testcases.HypervisorXen, nil, true, c)
				if err != nil {
					return err
				}
				m.Configs = append(m.Configs, testcases.MatrixConfig{Name: c, Fragments: frags})
			}
			if m.Run, err = f.options(false); err != nil {
				return err
			}
			// The cells of an earlier run with -o are not run again.
			cells, err := testcases.OpenMatrixLog(out)
			if err != nil {
				return err
			}
			defer cells.Close()
			err = m.Test(ctx, revs, cells.Done, func(c testcases.MatrixCell) {
				fmt.Fprintf(os.Stderr, "matrix: %s (%s) %s on %s: %s: %s\n", c.Rev, c.Release, c.Config, c.Hypervisor, c.Verdict, c.Reason)
				if err := cells.Add(c); err != nil {
					fmt.Fprintf(os.Stderr, "matrix: %v\n", err)
				}
			})
			testcases.WriteMatrixMarkdown(cmd.OutOrStdout(), cells.Cells, hvs)
			return err
		},
	}
	fl := cmd.Flags()
	f.register(fl, false)
	fl.MarkHidden("hypervisor")
	fl.StringVar(&repo, "repo", ".", "kernel git repository (only read)")
	fl.StringArrayVar(&revs, "rev", nil, "revision to test (repeatable, in order)")
	fl.StringVar(&tags, "tags", "", "test the tags matching this glob, oldest first (e.g. 'v*' of a ladder)")
	fl.StringArrayVar(&configs, "config", []string{"tinyconfig"}, "base config: tinyconfig, defconfig or a file (repeatable)")
	fl.StringSliceVar(&hvs, "hypervisors", []string{"qemu"}, "where to run each kernel: qemu, xen")
	fl.StringVarP(&out, "output", "o", "", "JSON-lines file of the cells: appended to, and its cells not run again")
	fl.IntVarP(&jobs, "jobs", "j", 0, "parallel make jobs (default: number of CPUs)")
	return cmd
}
