package bisect

import (
	"math"
	"sort"
)

// clock is what a job measured of its own wall time, for the planner's
// costs: it chooses between another run of a built commit and a build of a
// new one by expected information per minute of wall time.
type clock struct {
	builds []float64 // minutes of each build, in order
	// runs counts the runs measured: wall minutes without their build
	// (wall), and of that the test itself (test).
	runs       int
	wall, test float64
	// passTest and passExposure are the minutes of test asked of passing
	// runs and the exposure they gave (time mode).
	passTest, passExposure float64
}

// add measures one journaled run (or skip); first says it is the first
// of its commit, whose build it paid for: a build taken from a cache
// (Built false) is a build of no time.
func (c *clock) add(r Record, first, timeMode bool) {
	switch {
	case r.Built:
		c.builds = append(c.builds, r.BuildTime/60)
	case first:
		c.builds = append(c.builds, 0)
	}
	w := (r.Wall - r.BuildTime) / 60
	if r.Verdict == Skip || w <= 0 {
		return
	}
	c.runs++
	c.wall += w
	if !timeMode {
		return
	}
	if r.Verdict == Pass && r.Budget > 0 {
		c.passTest += r.Budget / 60
		c.passExposure += r.Elapsed / 60
		c.test += r.Budget / 60
	} else {
		// A run that failed stopped at its failure: its test lasted the
		// exposure it gave, in minutes of test.
		c.test += r.Elapsed / 60 / c.yield()
	}
}

// build is the expected minutes of the next build, and whether any was
// measured: the median of the builds after the first, which is usually a
// full build where later ones are incremental (a mean would be the first
// one's for long, and make every build look dear: repeated runs of one
// commit where a build of its neighbour costs about one run), else the
// first.
func (c *clock) build() (float64, bool) {
	switch len(c.builds) {
	case 0:
		return 0, false
	case 1:
		return c.builds[0], true
	}
	later := append([]float64(nil), c.builds[1:]...)
	sort.Float64s(later)
	n := len(later)
	if n%2 == 1 {
		return later[n/2], true
	}
	return (later[n/2-1] + later[n/2]) / 2, true
}

// run is the mean wall minutes of a run without its build.
func (c *clock) run() (float64, bool) {
	if c.runs == 0 {
		return 0, false
	}
	return math.Max(c.wall/float64(c.runs), 1e-4), true
}

// overhead is the mean wall minutes of a run beyond its test (boot, set-up,
// the verdict): time mode.
func (c *clock) overhead() (float64, bool) {
	if c.runs == 0 {
		return 0, false
	}
	return math.Max(0, (c.wall-c.test)/float64(c.runs)), true
}

// yield is the exposure a minute of test gives (time mode): 1 for a test
// that counts minutes, the traffic's for the kernel pipeline (which counts
// bytes checked as minutes at a fixed throughput).
func (c *clock) yield() float64 {
	if c.passTest <= 0 || c.passExposure <= 0 {
		return 1
	}
	return c.passExposure / c.passTest
}

// costs are the planner's costs in the search's unit from the measures and
// the options: minutes of wall time (time mode), or runs.
func (c *clock) costs(o Options) Costs {
	build, haveBuild := c.build()
	if o.Unit == UnitTime {
		cs := Costs{Build: 10, Run: 0.5, Yield: c.yield()} // minutes, until measured
		if haveBuild {
			cs.Build = build
		}
		if ov, ok := c.overhead(); ok {
			cs.Run = ov
		}
		if o.BuildCost > 0 {
			cs.Build = o.BuildCost
		}
		return cs
	}
	cs := Costs{Run: 1, Build: 3}
	if run, ok := c.run(); ok && haveBuild {
		cs.Build = math.Min(1000, build/run)
	}
	if o.BuildCost > 0 {
		cs.Build = o.BuildCost
	}
	return cs
}
