package demo

import (
	"fmt"
	"io"
	"time"
)

// WriteText writes the demo's result for people: both culprits, the
// effort, the wire verdict of a failing run, the time per phase and the
// reports.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "expected culprit: %s\n", r.Expected)
	fmt.Fprintf(w, "found culprit:    %s %q (confidence %.3f, %s)\n", r.Found, r.Subject, r.Confidence, r.Status)
	fmt.Fprintf(w, "runs %d, builds %d (%d cache hits)\n", r.Runs, r.Builds, r.CacheHits)
	if r.Wire != "" {
		fmt.Fprintf(w, "wire verdict of a failing run on the culprit: %s: %s\n", r.Wire, r.WireDetail)
	}
	p := r.Phases
	fmt.Fprintf(w, "time: history %s, builds %s, boots %s, runs %s, total %s\n",
		secs(p.History), secs(p.Builds), secs(p.Boots), secs(p.Runs), secs(p.Total))
	for _, rep := range r.Reports {
		fmt.Fprintf(w, "report: %s\n", rep)
	}
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}
