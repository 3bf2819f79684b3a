package sim

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/kbisect/kbisect/bisect"
)

func TestDebugWrong(t *testing.T) {
	p, _ := strconv.ParseFloat(os.Getenv("P"), 64)
	n, _ := strconv.Atoi(os.Getenv("N"))
	c := Config{Commits: 1024, Trials: n, Ps: []float64{p}, BuildCost: 2}
	c.defaults()
	sp, _ := bisect.ParseStrategy(os.Getenv("S"))
	wrong := 0
	for i := 0; i < c.Trials; i++ {
		tr := c.newTrial(i, p)
		plan := bisect.Plan{Strategy: sp, Unit: bisect.UnitRuns, Costs: bisect.Costs{Build: c.BuildCost, Run: 1}}
		if sp.Name == "oracle" {
			plan.Model.KnownRate = p
		}
		core := bisect.NewCore(tr.n, plan)
		counts := map[int]int{}
		var cc *bisect.Conclusion
		for {
			var req bisect.Request
			req, cc = core.Next(nil)
			if cc != nil {
				break
			}
			k := counts[req.Pos]
			counts[req.Pos]++
			f, _ := tr.run(false, req.Pos, k, 1)
			core.Record(req.Pos, f, 1, 1)
		}
		if cc.Pos != tr.culprit {
			wrong++
			r1, f1, e1 := core.Search.Stat(cc.Pos)
			r0, f0, e0 := core.Search.Stat(cc.Pos - 1)
			rt, ft, et := core.Search.Stat(tr.culprit)
			fmt.Printf("trial %d culprit %d named %d conf %.4f  named:%d/%g/%g parent:%d/%g/%g true:%d/%g/%g\n", i, tr.culprit, cc.Pos, cc.Confidence, r1, f1, e1, r0, f0, e0, rt, ft, et)
		}
	}
	fmt.Println("wrong", wrong, "of", c.Trials)
}
