package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/bisect/sim"
)

func newSimCmd() *cobra.Command {
	var (
		cfg        sim.Config
		strategies string
		asJSON     bool
		parallel   []int
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Compare bisection strategies on a simulated sporadic bug",
		Long:  help("sim"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strategies != "" {
				var err error
				if cfg.Strategies, err = sim.ParseStrategies(strategies); err != nil {
					return err
				}
			}
			start := time.Now()
			rows, err := sim.Sweep(cmd.Context(), cfg, parallel)
			if err != nil {
				return err
			}
			if asJSON {
				return sim.WriteJSON(cmd.OutOrStdout(), rows)
			}
			if err := sim.WriteTable(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%d commits, %d trials, scenario %s, build cost %g, %s\n",
				cfg.Commits, cfg.Trials, rows[0].Scenario, cfg.BuildCost, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Commits, "commits", 1024, "commits in the range")
	f.IntVar(&cfg.Trials, "trials", 200, "bisections per strategy and p")
	f.Float64SliceVar(&cfg.Ps, "p", nil, "per-run detection probabilities of a bad commit (default 0.9,0.5,0.2,0.05)")
	f.Float64SliceVar(&cfg.Rates, "rate", nil, "failure rates per minute instead of --p (time-based runs that stop at the first failure)")
	f.Float64Var(&cfg.RunMinutes, "run-minutes", 1, "with --rate: the shortest run, in minutes (runs go up to 16x)")
	f.Float64Var(&cfg.Overhead, "overhead", 0.5, "with --rate: the fixed cost of one run (boot), in minutes")
	f.Float64Var(&cfg.BuildCost, "build-cost", 2, "cost of a build, in runs (or minutes with --rate)")
	f.IntSliceVar(&parallel, "parallel", []int{1}, "tests in flight at once (multisection); several (1,2,4,8) print the wall time and the speed-up over one")
	f.StringVar(&strategies, "strategies", "", "comma-separated strategies: bayes, git-bisect, classic:K, syzkaller, bisectkit, oracle, oracle-stop, oracle-plan (default all but the three oracles, which are told p)")
	f.StringVar(&cfg.Scenario, "scenario", sim.Normal, "normal, varying, spurious, skips, none, old or twobugs")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	f.Float64Var(&cfg.Confidence, "confidence", 0.99, "stop when one commit holds this posterior probability")
	f.Float64Var(&cfg.Budget, "budget", 0, "runs (or minutes with --rate) within which bad must fail (default 300)")
	f.Float64Var(&cfg.SkipRate, "skip-rate", 0, "fraction of unbuildable commits (default 0.05 in the skips scenario)")
	f.Float64Var(&cfg.SpuriousRate, "spurious-rate", 0, "failure probability of good commits (default 0.002 in the spurious scenario)")
	def := bisect.ModelParams{}.WithDefaults(bisect.UnitRuns)
	f.Float64Var(&cfg.PriorA, "prior-a", 0, fmt.Sprintf("the model's prior Beta(a, b) on p (Gamma(a, b) on the rate with --rate): a (default %g)", def.PriorA))
	f.Float64Var(&cfg.PriorB, "prior-b", 0, fmt.Sprintf("the model's prior on p: b (default %g; with --rate, half of --run-minutes)", def.PriorB))
	f.Float64Var(&cfg.FalseFail, "false-fail", 0, fmt.Sprintf("the model's probability that a good commit fails a run (default %g)", def.FalseFail))
	f.Float64Var(&cfg.RateSpread, "rate-spread", 0, "the model allows bad commits to fail at rates up to this factor apart (default 1; 1.2 for robustness)")
	f.Float64Var(&cfg.Margin, "margin", 0, "stop when the error left is this fraction of 1-confidence (default 0.5)")
	f.Float64Var(&cfg.Predates, "predates", 0, fmt.Sprintf("the model's prior probability that the bug predates good (default %g)", def.Predates))
	f.IntVar(&cfg.Workers, "workers", 0, "goroutines (default GOMAXPROCS)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per row")
	return cmd
}
