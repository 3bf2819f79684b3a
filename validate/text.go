package validate

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// WriteCandidates writes a line per candidate patch: its group, the lines
// it adds and deletes, how many files it changes, and its file.
func WriteCandidates(w io.Writer, cands []Candidate) {
	for _, c := range cands {
		fmt.Fprintf(w, "%s  +%d -%d  %d file(s)  %s\n", c.Group, c.Added, c.Deleted, len(c.Files), c.Patch)
	}
}

// WriteText writes the report for people: a table of the base and the
// patches, and the details below it.
func (rep *Report) WriteText(w io.Writer) {
	test := rep.Test
	if rep.RunSeconds > 0 {
		test += fmt.Sprintf(", %s runs", time.Duration(rep.RunSeconds*float64(time.Second)))
	}
	fmt.Fprintf(w, "base %s %q; test %s; expect %s at confidence %g; budget %s, %s spent in runs\n\n",
		gitrepo.Short(rep.Base), rep.BaseSubject, test, rep.Expect, rep.Confidence, minutes(rep.BudgetSeconds/60), minutes(rep.SpentSeconds/60))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rateHead := "RATE/H [95%]"
	if rep.RateUnit == "per run" {
		rateHead = "P(FAIL)/RUN [95%]"
	}
	fmt.Fprintln(tw, "#\tPATCH\tAPPLIES\tBUILDS\tBOOTS\tVERDICT\tRUNS\tFAILS\tTEST TIME\t"+rateHead+"\tCONCLUSION")
	rows := append([]*Row{rep.BaseResult}, rep.Patches...)
	for _, r := range rows {
		idx := fmt.Sprint(r.Index)
		if r.Index == 0 {
			idx = "-"
		}
		name := r.Name
		if len(name) > 40 {
			name = name[:37] + "..."
		}
		applies := orDash(r.Applies)
		if r.Index == 0 {
			applies = "-"
		}
		rate, runs, fails, minutes := "-", "-", "-", "-"
		if r.Runs > 0 {
			rate = fmt.Sprintf("%s [%s, %s]", num(r.Rate), num(r.RateLow), num(r.RateHigh))
			runs, fails, minutes = fmt.Sprint(r.Runs), fmt.Sprint(r.Failures), testTime(r.SpentSeconds/60)
			if rep.Unit == "minute" {
				minutes = testTime(r.Exposure)
			}
		}
		concl := orDash(r.Conclusion)
		switch {
		case r.Conclusion == Inconclusive && r.Need > 0 && rep.Unit == "run":
			concl = fmt.Sprintf("inconclusive: need %.0f more runs", math.Ceil(r.Need))
		case r.Conclusion == Inconclusive && r.Need > 0:
			concl = fmt.Sprintf("inconclusive: need %.0f more minutes", math.Ceil(r.Need))
		case r.Probability > 0 && r.Conclusion != DoesNotFix && r.Conclusion != Inconclusive:
			concl += fmt.Sprintf(" (%.3f)", r.Probability)
		case r.Applies == "yes" && !r.Tested && r.Index > 0:
			concl = "(tested in the tip)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", idx, name, applies, buildCell(r),
			orDash(r.Boots), orDash(r.Verdict), runs, fails, minutes, rate, concl)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		label := fmt.Sprintf("%d %s", r.Index, r.Name)
		if r.Index == 0 {
			label = r.Name
		}
		if r.Detail != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", label, r.Conclusion, r.Detail)
		}
		if b := r.Build; b != nil {
			for _, wn := range b.Warnings {
				fmt.Fprintf(w, "%s: new warning: %s\n", label, wn)
			}
			if len(b.Uncompared) > 0 {
				fmt.Fprintf(w, "%s: the base's build log does not show %s compiled: its warnings there were not compared\n", label, strings.Join(b.Uncompared, ", "))
			}
		}
	}
	fmt.Fprintf(w, "\nworkspace: %s\n", rep.Workspace)
}

func buildCell(r *Row) string {
	b := r.Build
	if b == nil {
		return "-"
	}
	if !b.OK {
		return "no"
	}
	s := "yes"
	if n := len(b.Warnings); n > 0 {
		s = fmt.Sprintf("yes, %d new warning(s)", n)
	}
	return s
}

// minutes prints a time given in minutes.
func minutes(m float64) string {
	return time.Duration(m * float64(time.Minute)).Round(time.Second).String()
}

// testTime prints minutes of test: seconds when short.
func testTime(m float64) string {
	if m < 1 {
		return fmt.Sprintf("%.1fs", m*60)
	}
	return minutes(m)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// num prints a rate with sensible precision.
func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x < 1:
		return fmt.Sprintf("%.2g", x)
	case x < 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
