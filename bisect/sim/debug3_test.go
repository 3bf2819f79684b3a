package sim

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/kbisect/kbisect/bisect"
)

func TestDebugBreakdown(t *testing.T) {
	p, _ := strconv.ParseFloat(os.Getenv("P"), 64)
	n, _ := strconv.Atoi(os.Getenv("N"))
	c := Config{Commits: 1024, Trials: n, Ps: []float64{p}, BuildCost: 2}
	c.defaults()
	sp, _ := bisect.ParseStrategy(os.Getenv("S"))
	var endp, culp, par, obad, ogood, tot, fails float64
	for i := 0; i < c.Trials; i++ {
		tr := c.newTrial(i, p)
		plan := bisect.Plan{Strategy: sp, Unit: bisect.UnitRuns, Costs: bisect.Costs{Build: c.BuildCost, Run: 1}}
		plan.Model.PriorA, plan.Model.PriorB = 0.02, 0.5
		if sp.Name == "oracle" {
			plan.Model.KnownRate = p
		}
		core := bisect.NewCore(tr.n, plan)
		counts := map[int]int{}
		first := true
		for {
			req, cc := core.Next(nil)
			if cc != nil {
				break
			}
			k := counts[req.Pos]
			counts[req.Pos]++
			f, _ := tr.run(false, req.Pos, k, 1)
			core.Record(req.Pos, f, 1, 1)
			if f {
				fails++
			}
			tot++
			switch {
			case first && req.Pos == tr.n-1:
				endp++
				if f {
					first = false
				}
			case req.Pos == tr.culprit:
				culp++
			case req.Pos == tr.culprit-1:
				par++
			case req.Pos > tr.culprit:
				obad++
			default:
				ogood++
			}
		}
	}
	N := float64(n)
	fmt.Printf("total %.1f fails %.1f endpoint %.1f culprit %.1f parent %.1f otherbad %.1f othergood %.1f\n", tot/N, fails/N, endp/N, culp/N, par/N, obad/N, ogood/N)
}
