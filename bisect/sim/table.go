package sim

// table.go: the results of a simulation, the information bound they are
// measured against, and their table and JSON.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"

	"github.com/kbisect/kbisect/bisect"
)

// Row is one line of the table: one strategy at one rate.
type Row struct {
	Strategy string  `json:"strategy"`
	Default  bool    `json:"default,omitempty"`
	Scenario string  `json:"scenario"`
	P        float64 `json:"p,omitempty"`
	Rate     float64 `json:"rate_per_min,omitempty"`
	Trials   int     `json:"trials"`
	// Success is the fraction of trials with the right answer: the culprit
	// (or, when skips hide it, the smallest candidate set holding it), or
	// "no regression" when there is none.
	Success float64 `json:"success"`
	// Confident counts the trials that ended at >= the confidence asked
	// for, and ConfidentRight the fraction of those that were right (the
	// calibration).
	Confident      int     `json:"confident"`
	ConfidentRight float64 `json:"confident_right"`
	MeanConfidence float64 `json:"mean_confidence"`
	MeanRuns       float64 `json:"mean_runs"`
	P90Runs        float64 `json:"p90_runs"`
	Builds         float64 `json:"builds"`
	// Cost is runs + BuildCost·builds (runs mode), or minutes of test,
	// overheads and builds (time mode).
	Cost float64 `json:"cost"`
	// Parallel is the number of workers, and Wall the mean wall time with
	// them, in runs (runs mode) or minutes: the cost with one worker.
	Parallel int     `json:"parallel"`
	Wall     float64 `json:"wall"`
	// Other is the mean number of runs that failed with another signature
	// (the two-bug scenario).
	Other float64 `json:"other_fails,omitempty"`
	// Bound is the information bound log2(N)/C(p) in runs (runs mode).
	Bound float64 `json:"bound,omitempty"`
	// Minutes is the mean test time in minutes (time mode).
	Minutes float64 `json:"minutes,omitempty"`
}

// Capacity is the capacity in bits of the Z-channel on which a bad commit
// passes a run with probability 1-p and a good one always passes.
func Capacity(p float64) float64 {
	if p >= 1 {
		return 1
	}
	q := 1 - p
	return math.Log2(1 + (1-q)*math.Pow(q, q/(1-q)))
}

// Bound is the information bound on the mean number of runs to find one of
// n commits: log2(n)/C(p).
func Bound(n int, p float64) float64 {
	return math.Log2(float64(n)) / Capacity(p)
}

func (c *Config) row(sp bisect.StrategySpec, rate float64, timeMode bool, rs []result) Row {
	row := Row{Strategy: sp.String(), Default: sp.Name == "bayes", Scenario: c.Scenario, Trials: len(rs)}
	if timeMode {
		row.Rate = rate
	} else {
		row.P = rate
		row.Bound = Bound(c.Commits, rate)
	}
	runs := make([]float64, len(rs))
	var right, confRight int
	for i, r := range rs {
		if r.right {
			right++
		}
		if r.confident {
			row.Confident++
			if r.right {
				confRight++
			}
		}
		row.MeanConfidence += r.confidence
		runs[i] = float64(r.runs)
		row.MeanRuns += float64(r.runs)
		row.Builds += float64(r.builds)
		row.Cost += r.cost
		row.Wall += r.wall
		row.Other += float64(r.other)
		row.Minutes += r.minutes
	}
	n := float64(len(rs))
	row.Success = float64(right) / n
	if row.Confident > 0 {
		row.ConfidentRight = float64(confRight) / float64(row.Confident)
	}
	row.MeanConfidence /= n
	row.MeanRuns /= n
	row.Builds /= n
	row.Cost /= n
	row.Wall /= n
	row.Other /= n
	row.Minutes /= n
	sort.Float64s(runs)
	row.P90Runs = runs[int(math.Ceil(0.9*n))-1]
	row.Parallel = c.Parallel
	return row
}

// SpeedUp is the wall-time speed-up of row r over the row of rows with one
// worker for the same strategy, rate and scenario (0: none).
func SpeedUp(rows []Row, r Row) float64 {
	for _, b := range rows {
		if b.Parallel == 1 && b.Strategy == r.Strategy && b.P == r.P && b.Rate == r.Rate && b.Scenario == r.Scenario && r.Wall > 0 {
			return b.Wall / r.Wall
		}
	}
	return 0
}

// WriteJSON writes rows as one JSON object a line.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("sim rows: %w", err)
		}
	}
	return nil
}

// WriteTable prints rows as an aligned table: with the wall time and the
// speed-up over one worker when rows have several, the runs that failed
// with another signature when there were any.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	timeMode := len(rows) > 0 && rows[0].Rate > 0
	parallel, other := false, false
	for _, r := range rows {
		parallel = parallel || r.Parallel > 1
		other = other || r.Other > 0
	}
	head := "strategy\t"
	if timeMode {
		head += "rate/min\t"
	} else {
		head += "p\t"
	}
	head += "success\tconf>=c right\tmean conf\tmean runs\tp90 runs\tbuilds\tcost\t"
	if parallel {
		head += "K\twall\tspeed-up\t"
	}
	if other {
		head += "other fails\t"
	}
	if timeMode {
		head += "test min\t"
	} else {
		head += "bound\tx bound\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		name := r.Strategy
		if r.Default {
			name += " *"
		}
		line := name + "\t"
		if timeMode {
			line += fmt.Sprintf("%g\t", r.Rate)
		} else {
			line += fmt.Sprintf("%g\t", r.P)
		}
		calib := "-"
		if r.Confident > 0 {
			calib = fmt.Sprintf("%.1f%% of %d", 100*r.ConfidentRight, r.Confident)
		}
		line += fmt.Sprintf("%.1f%%\t%s\t%.3f\t%.1f\t%.0f\t%.1f\t%.1f\t", 100*r.Success, calib, r.MeanConfidence, r.MeanRuns, r.P90Runs, r.Builds, r.Cost)
		if parallel {
			sp := "-"
			if x := SpeedUp(rows, r); x > 0 {
				sp = fmt.Sprintf("%.2f", x)
			}
			line += fmt.Sprintf("%d\t%.1f\t%s\t", r.Parallel, r.Wall, sp)
		}
		if other {
			line += fmt.Sprintf("%.1f\t", r.Other)
		}
		if timeMode {
			line += fmt.Sprintf("%.1f\t", r.Minutes)
		} else {
			line += fmt.Sprintf("%.0f\t%.2f\t", r.Bound, r.MeanRuns/r.Bound)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}
