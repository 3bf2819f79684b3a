package bisect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteResult writes r, a result of this job, for people: the culprit and
// the confidence, or why there is none.
func (j *Job) WriteResult(w io.Writer, r *Result) {
	test := (time.Duration(r.TestSeconds) * time.Second).String()
	switch r.Status {
	case StatusFound:
		c := j.commitOf(r.Culprit)
		fmt.Fprintf(w, "%s: %s %s\n", j.culpritLabel(), c.Hash, c.Subject)
		fmt.Fprintf(w, "confidence %.4g after %d runs (%d builds, %s of test); detection rate %.3g %s\n", r.Confidence, r.Runs, r.Builds, test, r.Rate, r.RateUnit)
		if len(r.Flags) > 0 {
			fmt.Fprintf(w, "warning: %s\n", flagText(r.Flags))
		}
		if r.Revert != nil {
			fmt.Fprintf(w, "revert check: %s: %s\n", r.Revert.Verdict, r.Revert.Reason)
		}
		if r.Signature != "" {
			fmt.Fprintf(w, "failure bisected: %s\n", r.Signature)
		}
		if r.Decided != nil {
			fmt.Fprintf(w, "decided by: %s\n", r.Decided.Text(j))
		}
	case StatusNoRegression:
		if j.Spec.IsFix() {
			fmt.Fprintf(w, "no fix in the range: %s\n", r.Reason)
			break
		}
		fmt.Fprintf(w, "no regression in the range: %s\n", r.Reason)
	case StatusInconclusive:
		fmt.Fprintf(w, "inconclusive: %s\n", r.Reason)
		if len(r.Candidates) > 0 {
			fmt.Fprintf(w, "candidates (probability %.4g together):\n", r.Confidence)
			for _, h := range r.Candidates {
				c := j.commitOf(h)
				fmt.Fprintf(w, "  %s %s\n", c.Hash, c.Subject)
			}
		}
	default:
		fmt.Fprintf(w, "stopped: %s\n", r.Reason)
	}
	if r.OtherFails > 0 {
		fmt.Fprintf(w, "not counted: %s\n", j.otherText())
	}
}

// otherText says which runs failed with other signatures than the one
// bisected.
func (j *Job) otherText() string {
	var parts []string
	n := 0
	for _, o := range j.OtherFailures() {
		n += len(o.Runs)
		parts = append(parts, fmt.Sprintf("%q %d times on %d commits", sigText(o.Signature), len(o.Runs), len(o.Commits)))
	}
	return fmt.Sprintf("%d runs failed with another signature (%s)", n, strings.Join(parts, "; "))
}

// verdictText is a run's verdict, a failure of another signature than the
// one bisected marked as such.
func (j *Job) verdictText(r Record) string {
	if r.Verdict == Fail && !j.core.Matches(r.FailSig) {
		return "fail (other signature: " + sigText(r.FailSig) + ")"
	}
	return string(r.Verdict)
}

// culpritLabel names what the bisection finds.
func (j *Job) culpritLabel() string {
	if j.Spec.IsFix() {
		return "first fixed commit"
	}
	return "first bad commit"
}

func flagText(flags []string) string {
	var out []string
	for _, f := range flags {
		switch {
		case f == "merge":
			out = append(out, "the culprit is a merge: the bug comes from combining its parents")
		case strings.HasPrefix(f, "tag:"):
			out = append(out, "the culprit is the tagged release "+strings.TrimPrefix(f, "tag:"))
		case f == "same-binary-as-parent":
			out = append(out, "the culprit builds to the same binary as its parent: the difference in verdicts cannot come from it; suspect noise or the environment")
		default:
			out = append(out, f)
		}
	}
	return strings.Join(out, "; ")
}

// WriteStatusJSON writes the status (see Status) with the five most
// probable culprits, as one line of JSON.
func (j *Job) WriteStatusJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(struct {
		*Result
		Top []TopCommit `json:"top"`
	}{j.Status(), j.Top(5)})
}

// WriteStatus writes the state of the bisection for people: the range,
// the test, the status, the runs and time spent, the most probable
// culprits and the last runs.
func (j *Job) WriteStatus(w io.Writer) {
	r := j.Status()
	n := len(j.commits) - 1
	fmt.Fprintf(w, "job:      %s\n", j.Dir)
	fmt.Fprintf(w, "repo:     %s\n", j.Spec.Repo)
	if j.Spec.IsFix() {
		fmt.Fprintf(w, "range:    bad %s .. good %s (%d commits; looking for the fix)\n", DescribeCommit(j.commits[n]), DescribeCommit(j.commits[0]), n)
	} else {
		fmt.Fprintf(w, "range:    good %s .. bad %s (%d commits)\n", DescribeCommit(j.commits[0]), DescribeCommit(j.commits[n]), n)
	}
	if j.Spec.Exec != "" {
		fmt.Fprintf(w, "test:     --exec %s\n", j.Spec.Exec)
	} else {
		fmt.Fprintf(w, "test:     kernel pipeline %s\n", strings.Join(j.Spec.TestArgs, " "))
	}
	fmt.Fprintf(w, "status:   %s", r.Status)
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", r.Reason)
	}
	fmt.Fprintln(w)
	inFlight := ""
	if r.InFlight > 0 {
		inFlight = fmt.Sprintf(", %d in flight", r.InFlight)
	}
	fmt.Fprintf(w, "runs:     %d (%d builds, %d skipped, %d infrastructure errors, %d lost%s)\n", r.Runs, r.Builds, r.Skips, r.InfraErrors, r.LostRuns, inFlight)
	fmt.Fprintf(w, "time:     %s of test, %s of builds\n", time.Duration(r.TestSeconds*float64(time.Second)).Round(time.Second), time.Duration(r.BuildSecs*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(w, "rate:     %.3g %s (estimated)\n", r.Rate, r.RateUnit)
	if r.Signature != "" {
		fmt.Fprintf(w, "failure:  %s\n", r.Signature)
	}
	if r.OtherFails > 0 {
		fmt.Fprintf(w, "other:    %s\n", j.otherText())
	}
	fmt.Fprintf(w, "posterior (%s):\n", j.culpritLabel())
	for _, t := range j.Top(5) {
		fmt.Fprintf(w, "  %6.2f%%  %s\n", 100*t.P, DescribeCommit(t.Commit))
	}
	var last []Record
	for _, rec := range j.records {
		if rec.Type == RecRun || rec.Type == RecInfra || rec.Type == RecRevert {
			last = append(last, rec)
		}
	}
	if len(last) > 5 {
		last = last[len(last)-5:]
	}
	if len(last) > 0 {
		fmt.Fprintln(w, "last runs:")
	}
	for _, rec := range last {
		v := j.verdictText(rec)
		if rec.Type == RecInfra {
			v = "error: " + rec.Error
		}
		fmt.Fprintf(w, "  #%d %s %.12s %s (%.1fs)\n", rec.Seq, rec.Time.Local().Format("15:04:05"), rec.Commit, v, rec.Elapsed)
	}
}
