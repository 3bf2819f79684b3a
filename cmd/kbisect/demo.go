package main

import (
	"fmt"
	"time"

	"github.com/kbisect/kbisect/internal/demo"
	"github.com/kbisect/kbisect/internal/statusline"
	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	var (
		o       demo.Options
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "demo [--commits 64] [--json]",
		Short: "Bisect a real kernel history with a sporadic NAT-T ESP corruption, end to end",
		Long:  help("demo"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := statusline.NewLog(statusline.Stderr())
			defer progress.Close()
			o.Progress = progress.Phase
			r, err := demo.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := printResult(cmd.OutOrStdout(), r, jsonOut); err != nil {
				return err
			}
			if !r.Correct {
				return &exitError{code: 1, err: fmt.Errorf("found %s, but the injected culprit is %s", r.Found, r.Expected)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Commits, "commits", 64, "commits in the demo history")
	f.Uint64Var(&o.Seed, "seed", 1, "which commit is the culprit (same seed, same history)")
	f.DurationVar(&o.RunTime, "run-time", 20*time.Second, "length of a first run of a commit")
	f.StringVar(&o.JobDir, "job", "", "job directory (default: a new one under the cache)")
	f.BoolVar(&jsonOut, "json", false, "end with one JSON object")
	return cmd
}
