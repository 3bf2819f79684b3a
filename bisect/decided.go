package bisect

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Decision names the runs that decided a culprit: the failures of the bug
// on the first bad commit (they prove it bad), the passes on the tested
// commit just before it (they make it good, as strongly as the bug's rate
// says), and the runs on the commits proven bad, which set that rate. For
// a fix, Bad is the last commit with the bug and Good the fix.
type Decision struct {
	Bad     string `json:"bad"`
	BadRuns []int  `json:"bad_runs"`
	// Good is "" when the commit before Bad is the range's good end,
	// which the search takes as good without testing it.
	Good     string `json:"good,omitempty"`
	GoodRuns []int  `json:"good_runs,omitempty"`
	// Between counts the commits between Good and Bad that could not be
	// tested (they do not build or boot, or fail with another signature).
	Between int `json:"between,omitempty"`
	// GoodBad is the probability left that Good is bad after all.
	GoodBad float64 `json:"p_good_bad"`
	// RateCommits, RateRuns and RateFails are the commits proven bad (one
	// failure or more), their runs and failures; Rate the rate they give
	// (per run, or per minute in time mode).
	RateCommits int     `json:"rate_commits"`
	RateRuns    int     `json:"rate_runs"`
	RateFails   int     `json:"rate_fails"`
	Rate        float64 `json:"rate"`
}

// decision is the Decision for the first bad position pos.
func (j *Job) decision(pos int) *Decision {
	s := j.core.Search
	d := &Decision{Bad: j.commits[pos].Hash, Rate: s.RateEstimate()}
	q := pos - 1
	for q > 0 {
		if runs, _, _ := s.Stat(q); runs > 0 {
			break
		}
		q--
	}
	d.Between = pos - 1 - q
	if q > 0 {
		d.Good = j.commits[q].Hash
	}
	if q >= 0 {
		d.GoodBad = s.ProbBad(q)
	}
	for _, r := range j.records {
		if r.Type != RecRun {
			continue
		}
		switch {
		case r.Commit == d.Bad && r.Verdict == Fail && j.core.Matches(r.FailSig):
			d.BadRuns = append(d.BadRuns, r.Seq)
		case r.Commit == d.Good && d.Good != "" && r.Verdict == Pass:
			d.GoodRuns = append(d.GoodRuns, r.Seq)
		}
	}
	for i := 0; i < s.Len(); i++ {
		if runs, f, _ := s.Stat(i); f > 0 {
			d.RateCommits++
			d.RateRuns += runs
			d.RateFails += int(f)
		}
	}
	return d
}

// runList writes run numbers as "#3 #7 #9", the first max of them.
func runList(seqs []int, max int) string {
	s := append([]int(nil), seqs...)
	sort.Ints(s)
	var parts []string
	for i, q := range s {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(s)-max))
			break
		}
		parts = append(parts, fmt.Sprintf("#%d", q))
	}
	return strings.Join(parts, " ")
}

// Text says in one paragraph what decided: which runs proved the bug on
// one side and made its absence probable on the other.
func (d *Decision) Text(j *Job) string {
	bad := DescribeCommit(j.commitOf(d.Bad))
	var b strings.Builder
	fails := "a run"
	if len(d.BadRuns) != 1 {
		fails = fmt.Sprintf("%d runs", len(d.BadRuns))
	}
	fmt.Fprintf(&b, "%s (%s) failed on %s: the bug is there", fails, runList(d.BadRuns, 8), bad)
	if j.Spec.IsFix() {
		b.WriteString(" (the last commit with it)")
	}
	b.WriteString("; ")
	unit := "per run"
	if j.Spec.Options.Unit == UnitTime {
		unit = "per minute"
	}
	switch {
	case d.Good == "":
		fmt.Fprintf(&b, "the commit before it is the range's good end, taken as good")
	default:
		what := "the commit before it"
		if d.Between > 0 {
			what = fmt.Sprintf("the last testable commit before it (%d between could not be tested)", d.Between)
		}
		if j.Spec.IsFix() {
			what = "the fix"
		}
		fmt.Fprintf(&b, "%d runs (%s) passed on %s, %s: the bug is not there with probability %.4g",
			len(d.GoodRuns), runList(d.GoodRuns, 8), DescribeCommit(j.commitOf(d.Good)), what, 1-d.GoodBad)
	}
	fmt.Fprintf(&b, " (the bug's rate, %.3g %s, comes from %d failures in %d runs on the %d commits proven bad)", d.Rate, unit, d.RateFails, d.RateRuns, d.RateCommits)
	return b.String()
}

// OtherFailure is a failure signature other than the one bisected, with
// the runs that failed with it: they counted as neither pass nor fail.
type OtherFailure struct {
	Signature string   `json:"signature"`
	Runs      []int    `json:"runs"`
	Commits   []string `json:"commits"`
}

// OtherFailures returns the failures of other signatures than the one
// bisected, by signature, the most frequent first.
func (j *Job) OtherFailures() []OtherFailure {
	by := make(map[string]*OtherFailure)
	var order []string
	for _, r := range j.records {
		if (r.Type != RecRun && r.Type != RecRevert) || r.Verdict != Fail || j.core.Matches(r.FailSig) {
			continue
		}
		o := by[r.FailSig]
		if o == nil {
			o = &OtherFailure{Signature: r.FailSig}
			by[r.FailSig] = o
			order = append(order, r.FailSig)
		}
		o.Runs = append(o.Runs, r.Seq)
		if !slices.Contains(o.Commits, r.Commit) {
			o.Commits = append(o.Commits, r.Commit)
		}
	}
	out := make([]OtherFailure, 0, len(order))
	for _, k := range order {
		out = append(out, *by[k])
	}
	sort.SliceStable(out, func(a, b int) bool { return len(out[a].Runs) > len(out[b].Runs) })
	return out
}

// sigText shows a failure signature; the empty one is "(none)".
func sigText(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
