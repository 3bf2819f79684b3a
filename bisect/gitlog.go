package bisect

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// CommitSummary is what the bisection knows about one tested commit.
type CommitSummary struct {
	Pos    int    `json:"pos"`
	Commit Commit `json:"commit"`
	Runs   int    `json:"runs"`
	Fails  int    `json:"fails"`
	// Other counts the runs that failed with another signature than the
	// one bisected (not in Runs).
	Other   int     `json:"other_fails,omitempty"`
	Skipped bool    `json:"skipped,omitempty"`
	ProbBad float64 `json:"p_bad"`
	// Verdict is the one the bisection settles on: "bad" at or after the
	// culprit, "good" before it, "skip".
	Verdict string `json:"verdict"`
	First   int    `json:"first_seq"`
}

// boundary is the first bad position the log and reports mark from: the
// culprit if found, else the most probable position.
func (j *Job) boundary() (int, bool) {
	if r := j.finished; r != nil {
		switch {
		case r.Status == StatusFound:
			if p, ok := j.index[r.Culprit]; ok {
				if j.Spec.IsFix() {
					p++ // the fix; the search's first bad commit is after it
				}
				return p, true
			}
		case r.Status == StatusNoRegression:
			return -1, false
		case len(r.Candidates) > 0:
			if p, ok := j.index[r.Candidates[0]]; ok {
				if j.Spec.IsFix() {
					p++
				}
				return p, true
			}
		}
	}
	pos, _ := j.core.Search.Best()
	return pos, true
}

// Tested returns the commits tested, in the order they were first tested.
func (j *Job) Tested() []CommitSummary {
	b, ok := j.boundary()
	seen := make(map[string]int)
	var out []CommitSummary
	for _, r := range j.records {
		if r.Type != RecRun {
			continue
		}
		pos, ok2 := j.index[r.Commit]
		if !ok2 {
			continue
		}
		i, have := seen[r.Commit]
		if !have {
			i = len(out)
			seen[r.Commit] = i
			out = append(out, CommitSummary{Pos: pos, Commit: j.commits[pos], First: r.Seq})
		}
		cs := &out[i]
		switch {
		case r.Verdict == Skip:
			cs.Skipped = true
		case r.Verdict == Fail && !j.core.Matches(r.FailSig):
			cs.Other++
		case r.Verdict == Fail:
			cs.Runs++
			cs.Fails++
		default:
			cs.Runs++
		}
	}
	for i := range out {
		cs := &out[i]
		cs.Pos = j.index[cs.Commit.Hash]
		cs.ProbBad = j.core.Search.ProbBad(cs.Pos)
		switch {
		case cs.Skipped && cs.Runs == 0:
			cs.Verdict = "skip"
		case !ok:
			cs.Verdict = "unknown"
		case cs.Pos >= b:
			cs.Verdict = "bad"
		default:
			cs.Verdict = "good"
		}
	}
	return out
}

// WriteLog writes the bisection as a `git bisect` log: `git bisect replay`
// accepts it. A tested commit is marked as the bisection settles it (bad
// from the culprit on, good before it), whatever its single runs said, when
// the posterior holds that at the job's confidence; the others are listed
// in comments as undecided. A comment gives each one's runs and failures. A fix bisection is written
// with git's terms old=broken and new=fixed: git bisect then names the
// first fixed commit.
func (j *Job) WriteLog(w io.Writer) error {
	var b strings.Builder
	good, bad := j.commits[0], j.commits[len(j.commits)-1]
	termGood, termBad := "good", "bad"
	fmt.Fprintf(&b, "# kbisect bisect log of %s\n", j.Dir)
	if j.Spec.IsFix() {
		termGood, termBad = "fixed", "broken"
		b.WriteString("git bisect start '--term-old=broken' '--term-new=fixed'\n")
	} else {
		b.WriteString("git bisect start\n")
	}
	tested := j.Tested()
	stats := make(map[string]CommitSummary)
	for _, t := range tested {
		stats[t.Commit.Hash] = t
	}
	note := func(h string) string {
		t, ok := stats[h]
		if !ok {
			return ""
		}
		if t.Skipped && t.Runs == 0 {
			return " (untestable)"
		}
		if t.Other > 0 {
			return fmt.Sprintf(" (%d runs, %d failed; %d more failed with another signature)", t.Runs, t.Fails, t.Other)
		}
		return fmt.Sprintf(" (%d runs, %d failed)", t.Runs, t.Fails)
	}
	fmt.Fprintf(&b, "# %s: [%s] %s%s\n", termBad, bad.Hash, oneLine(bad.Subject), note(bad.Hash))
	fmt.Fprintf(&b, "git bisect %s %s\n", termBad, bad.Hash)
	fmt.Fprintf(&b, "# %s: [%s] %s%s\n", termGood, good.Hash, oneLine(good.Subject), note(good.Hash))
	fmt.Fprintf(&b, "git bisect %s %s\n", termGood, good.Hash)
	if r := j.finished; r != nil && r.Status == StatusNoRegression {
		fmt.Fprintf(&b, "# nothing to find in the range: %s\n", oneLine(r.Reason))
		_, err := io.WriteString(w, b.String())
		return err
	}
	// git keeps one commit of the new term (bad; fixed for a fix) and
	// moves it to every commit marked so: those go last, newest first, so
	// that it ends on the oldest. (With --parallel, commits are not first
	// tested in that order.)
	newVerdict := "bad"
	if j.Spec.IsFix() {
		newVerdict = "good" // in the search's terms; git's "fixed"
	}
	sort.SliceStable(tested, func(a, b int) bool {
		na, nb := tested[a].Verdict == newVerdict, tested[b].Verdict == newVerdict
		if na != nb {
			return nb
		}
		if !na {
			return false
		}
		// Newest first: the search runs forwards in time for a
		// regression, backwards for a fix.
		if j.Spec.IsFix() {
			return tested[a].Pos < tested[b].Pos
		}
		return tested[a].Pos > tested[b].Pos
	})
	// A commit is marked only when the posterior holds it at the job's
	// confidence: a commit that passed a few times in an unfinished job
	// may still be bad, and marking it good would send a user who goes
	// on by hand (git bisect replay) past the culprit.
	o := j.Spec.Options
	o.defaults()
	conf := o.Confidence
	var undecided []CommitSummary
	for _, t := range tested {
		if t.Pos == 0 || t.Pos == len(j.commits)-1 {
			continue
		}
		h := t.Commit.Hash
		term := map[string]string{"bad": termBad, "good": termGood, "skip": "skip"}[t.Verdict]
		if term == "" {
			continue
		}
		if (t.Verdict == "good" && t.ProbBad > 1-conf) || (t.Verdict == "bad" && t.ProbBad < conf) {
			undecided = append(undecided, t)
			continue
		}
		fmt.Fprintf(&b, "# %s: [%s] %s%s\n", term, h, oneLine(t.Commit.Subject), note(h))
		fmt.Fprintf(&b, "git bisect %s %s\n", term, h)
	}
	for _, t := range undecided {
		fmt.Fprintf(&b, "# undecided at confidence %g: [%s] %s%s, P(%s) %.3g\n", conf, t.Commit.Hash, oneLine(t.Commit.Subject), note(t.Commit.Hash), termBad, t.ProbBad)
	}
	what := "first bad commit"
	if j.Spec.IsFix() {
		what = "first fixed commit"
	}
	if r := j.finished; r != nil && r.Status == StatusFound {
		fmt.Fprintf(&b, "# %s: [%s] %s (confidence %.4g)\n", what, r.Culprit, oneLine(r.Subject), r.Confidence)
	} else if pos, ok := j.boundary(); ok {
		_, p := j.core.Search.Best()
		c := j.commits[j.answer(pos)]
		fmt.Fprintf(&b, "# most probable %s so far: [%s] %s (%.3g)\n", what, c.Hash, oneLine(c.Subject), p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
