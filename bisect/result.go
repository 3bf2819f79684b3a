package bisect

import (
	"fmt"
	"sort"
	"strings"
)

// Result is the answer of a bisection.
type Result struct {
	Status string `json:"status"`
	// Find is what was looked for (FindRegression or FindFix); Culprit is
	// the commit found: the first on which the bug shows, or for a fix the
	// first on which it no longer does.
	Find       string  `json:"find"`
	Culprit    string  `json:"culprit,omitempty"`
	Subject    string  `json:"subject,omitempty"`
	Confidence float64 `json:"confidence"`
	// Candidates are the commits the culprit is among when untestable
	// commits leave several (status inconclusive).
	Candidates []string `json:"candidates,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	// Flags warn about the culprit: "merge", "tag:<name>",
	// "same-binary-as-parent".
	Flags  []string      `json:"flags,omitempty"`
	Revert *RevertResult `json:"revert,omitempty"`
	// Decided names the runs that decided the culprit.
	Decided *Decision `json:"decided,omitempty"`
	// Signature is the failure signature bisected (of the first failure
	// that counted); OtherFails counts the runs that failed with another,
	// which counted as neither pass nor fail.
	Signature  string `json:"fail_signature,omitempty"`
	OtherFails int    `json:"other_fails,omitempty"`

	Runs        int `json:"runs"`
	Builds      int `json:"builds"`
	Skips       int `json:"skips"`
	InfraErrors int `json:"infra_errors"`
	LostRuns    int `json:"lost_runs,omitempty"`
	// InFlight are the runs under way in a running bisection (Status).
	InFlight    int     `json:"in_flight,omitempty"`
	TestSeconds float64 `json:"test_seconds"`
	BuildSecs   float64 `json:"build_seconds"`
	// Rate is the estimated detection rate of a bad commit: per run (runs
	// mode) or per minute (time mode).
	Rate     float64 `json:"rate"`
	RateUnit string  `json:"rate_unit"`
	Strategy string  `json:"strategy"`
	Good     string  `json:"good"`
	Bad      string  `json:"bad"`
	Job      string  `json:"job"`
}

// finish writes the result to the journal.
func (j *Job) finish(c *Conclusion, tester Tester) (*Result, error) {
	res := j.result(c)
	if j.Spec.Options.VerifyRevert && res.Status == StatusFound {
		if _, ok := tester.(RevertTester); !ok {
			res.Revert = &RevertResult{Verdict: "unsupported", Reason: "this test cannot test a revert"}
		}
	}
	if err := j.append(Record{Type: RecFinish, Result: res}); err != nil {
		return nil, err
	}
	j.revertCulprit = nil
	return res, nil
}

// result builds the Result for conclusion c (nil: the state so far).
func (j *Job) result(c *Conclusion) *Result {
	s := j.core.Search
	res := &Result{
		Runs: j.runs, Builds: j.builds, Skips: j.skips, InfraErrors: j.infra, LostRuns: j.lost + len(j.open),
		TestSeconds: j.testMin * 60, BuildSecs: j.buildMin * 60,
		Rate: s.RateEstimate(), Strategy: j.Spec.Options.Strategy,
		Good: j.Spec.Good, Bad: j.Spec.Bad, Job: j.Dir, Find: FindRegression,
		OtherFails: j.others,
	}
	res.Signature, _ = j.core.Target()
	if j.Spec.IsFix() {
		res.Find = FindFix
	}
	res.RateUnit = "per run"
	if j.Spec.Options.Unit == UnitTime {
		res.RateUnit = "per minute"
		if j.Spec.Exec == "" {
			// The kernel pipeline counts exposure in traffic
			// (testcases.Report.Exposure).
			res.RateUnit = "per minute of traffic"
		}
	}
	if c == nil {
		pos, p := s.Best()
		res.Status = "running"
		cu := j.commits[j.answer(pos)]
		res.Culprit, res.Subject, res.Confidence = cu.Hash, cu.Subject, p
		return res
	}
	res.Status, res.Reason, res.Confidence = c.Status, c.Reason, c.Confidence
	if c.Pos < 0 {
		pos, p := s.Best()
		res.Confidence = p
		res.Candidates = []string{j.commits[j.answer(pos)].Hash}
		return res
	}
	switch c.Status {
	case StatusFound:
		cu := j.commits[j.answer(c.Pos)]
		res.Culprit, res.Subject = cu.Hash, cu.Subject
		res.Flags = j.flags(j.answer(c.Pos))
		res.Decided = j.decision(c.Pos)
		if j.Spec.Options.VerifyRevert {
			if runs, fails, skips, minutes, reason := j.revertRuns(cu.Hash); runs+skips > 0 {
				rr := &RevertResult{Runs: runs, Fails: fails, TestSeconds: minutes * 60}
				switch {
				case skips > 0:
					rr.Verdict, rr.Reason = "does-not-apply", reason
				case fails > 0:
					rr.Verdict = "still-fails"
					rr.Reason = "bad with the culprit reverted still fails: the culprit alone does not explain the failure"
				default:
					rr.Verdict = "fixed"
					rr.Reason = fmt.Sprintf("bad with the culprit reverted passed %s where bad fails with probability 0.99", j.fmtExposure(j.revertNeed()))
				}
				res.Revert = rr
			}
		}
	case StatusNoRegression:
		// nothing to name
	default:
		if c.Lo < c.Hi {
			for i := c.Lo; i <= c.Hi; i++ {
				res.Candidates = append(res.Candidates, j.commits[j.answer(i)].Hash)
			}
		} else if c.Pos > 0 {
			res.Candidates = []string{j.commits[j.answer(c.Pos)].Hash}
		}
	}
	return res
}

// answer is the position of the commit to name when the search's first
// bad commit is at pos: that commit, or for a fix the one after it in time
// (the search runs from good, the newest, back to bad).
func (j *Job) answer(pos int) int {
	if j.Spec.IsFix() && pos > 0 {
		return pos - 1
	}
	return pos
}

func (j *Job) fmtExposure(x float64) string {
	if j.Spec.Options.Unit == UnitTime {
		return fmtMinutes(x)
	}
	return fmt.Sprintf("%.0f runs", x)
}

// flags warns about a culprit at pos.
func (j *Job) flags(pos int) []string {
	c := j.commits[pos]
	var out []string
	if c.IsMerge() {
		out = append(out, "merge")
	}
	for _, t := range c.Tags {
		out = append(out, "tag:"+t)
	}
	parent := pos - 1 // in time; a fix search runs backwards
	if j.Spec.IsFix() {
		parent = pos + 1
	}
	if parent >= 0 && parent < len(j.commits) {
		if a, b := j.sig[c.Hash], j.sig[j.commits[parent].Hash]; a != "" && a == b {
			out = append(out, "same-binary-as-parent")
		}
	}
	sort.Strings(out[min(len(out), 1):])
	return out
}

// Status returns the result if finished, else the state so far (status
// "running" when another process holds the job, "interrupted" otherwise).
func (j *Job) Status() *Result {
	if j.finished != nil {
		return j.finished
	}
	r := j.result(nil)
	if !Locked(j.Dir) && j.lock == nil {
		r.Status = "interrupted"
	} else {
		// Runs begun and not completed are under way, not lost.
		r.LostRuns, r.InFlight = j.lost, len(j.open)
	}
	return r
}

// DescribeCommit formats a commit for people: short hash and subject.
func DescribeCommit(c Commit) string {
	if c.Subject == "" {
		return c.Short()
	}
	return c.Short() + " " + strings.TrimSpace(c.Subject)
}
