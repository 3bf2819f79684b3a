package bisect

import (
	"math"
	"testing"
)

// TestClockCosts checks the planner's costs from a job's measures: a first
// (full) build does not make every later (incremental) one look as dear,
// and in time mode a run's overhead and the exposure a minute of test
// gives come from the runs.
func TestClockCosts(t *testing.T) {
	var c clock
	if got := c.costs(Options{Unit: UnitTime}); got.Build != 10 || got.Run != 0.5 || got.Yield != 1 {
		t.Errorf("unmeasured time costs %+v", got)
	}
	// A 5-minute full build of bad, then incremental ones of 20-40 s;
	// runs of 20 s of test that take 50 s and check twice the traffic of
	// the reference throughput.
	runs := []Record{
		{Verdict: Fail, Built: true, BuildTime: 300, Wall: 300 + 40, Elapsed: 20, Budget: 20},
		{Verdict: Pass, Built: true, BuildTime: 20, Wall: 20 + 50, Elapsed: 40, Budget: 20},
		{Verdict: Pass, Wall: 50, Elapsed: 40, Budget: 20},
		{Verdict: Skip, Built: true, BuildTime: 40, Wall: 40},
		{Verdict: Pass, Built: true, BuildTime: 30, Wall: 30 + 50, Elapsed: 40, Budget: 20},
	}
	for i, r := range runs {
		c.add(r, i != 2, true)
	}
	got := c.costs(Options{Unit: UnitTime})
	if math.Abs(got.Build-0.5) > 1e-9 || math.Abs(got.Yield-2) > 1e-9 {
		t.Errorf("build %.3g min (want the median of the later builds, 0.5), yield %.3g (want 2)", got.Build, got.Yield)
	}
	if got.Run <= 0.4 || got.Run >= 0.6 {
		t.Errorf("overhead %.3g min, want about half a minute", got.Run)
	}
	if got := c.costs(Options{Unit: UnitTime, BuildCost: 7}); got.Build != 7 {
		t.Errorf("--build-cost 7: build %g", got.Build)
	}
	// Builds found in the cache (a second demo) cost nothing: the first
	// run of a commit that did not build counts a build of no time.
	var warm clock
	for i := 0; i < 3; i++ {
		warm.add(Record{Verdict: Pass, Wall: 50, Elapsed: 40, Budget: 20}, true, true)
	}
	if got := warm.costs(Options{Unit: UnitTime}); got.Build != 0 {
		t.Errorf("builds from the cache cost %g min", got.Build)
	}
	// Runs mode: a build costs the median later build over a run's wall.
	var r clock
	for _, rec := range []Record{
		{Verdict: Fail, Built: true, BuildTime: 600, Wall: 610},
		{Verdict: Pass, Built: true, BuildTime: 30, Wall: 40},
		{Verdict: Pass, Wall: 10},
	} {
		r.add(rec, rec.Built, false)
	}
	if got := r.costs(Options{Unit: UnitRuns}); got.Run != 1 || math.Abs(got.Build-3) > 1e-9 {
		t.Errorf("runs costs %+v, want a build of 3 runs", got)
	}
}
