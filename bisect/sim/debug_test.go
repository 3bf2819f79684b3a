package sim

import (
	"fmt"
	"os"
	"testing"
	"strconv"

	"github.com/kbisect/kbisect/bisect"
)

func TestDebugTrace(t *testing.T) {
	p, _ := strconv.ParseFloat(os.Getenv("P"), 64)
	c := Config{Commits: 1024, Trials: 3, Ps: []float64{p}, BuildCost: 0}
	c.defaults()
	for _, name := range []string{"bayes"} {
		sp, _ := bisect.ParseStrategy(name)
		for i := 0; i < 1; i++ {
			tr := c.newTrial(i, p)
			plan := bisect.Plan{Strategy: sp, Unit: bisect.UnitRuns, Costs: bisect.Costs{Build: c.BuildCost, Run: 1}}
			if name == "oracle" {
				plan.Model.KnownRate = p
			}
			core := bisect.NewCore(tr.n, plan)
			counts := map[int]int{}
			fmt.Printf("== %s trial %d culprit %d\n", name, i, tr.culprit)
			for step := 0; ; step++ {
				req, cc := core.Next(nil)
				if cc != nil {
					fmt.Printf("  -> %+v\n", *cc)
					break
				}
				k := counts[req.Pos]
				counts[req.Pos]++
				f, _ := tr.run(false, req.Pos, k, 1)
				core.Record(req.Pos, f, 1, 1)
				b, bp := core.Search.Best()
				fmt.Printf("  %3d pos %4d (d=%5d) gain %.3f cost %.1f fail=%v  best %d %.3f rate %.2f top:", step, req.Pos, req.Pos-tr.culprit, req.Gain, req.Cost, f, b, bp, core.Search.RateEstimate())
				for _, pp := range core.Top(5) {
					fmt.Printf(" %d:%.3f", pp.Pos-tr.culprit, pp.P)
				}
				fmt.Println()
			}
		}
	}
}
