package bisect

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/version"
)

// reportBins is the number of columns of the posterior plot.
const reportBins = 200

// binPosterior sums p into bins columns and divides each by the number of
// positions it holds (a density, so that bins of unequal width compare).
func binPosterior(p []float64, bins int) []float64 {
	if len(p) <= bins {
		return append([]float64(nil), p...)
	}
	out := make([]float64, bins)
	cnt := make([]float64, bins)
	for i, v := range p {
		out[i*bins/len(p)] += v
		cnt[i*bins/len(p)]++
	}
	for i := range out {
		out[i] /= cnt[i]
	}
	return out
}

// OpenReport reads the bisection in dir for a report: like Open, and it
// keeps the posterior after every run.
func OpenReport(dir string) (*Job, error) { return open(dir, nil, true) }

// TopCommit is a commit with its posterior probability of being the first
// bad one.
type TopCommit struct {
	Commit Commit  `json:"commit"`
	Pos    int     `json:"pos"`
	P      float64 `json:"p"`
}

// Report is the JSON report of a bisection.
type Report struct {
	// Kbisect is the version and commit of the kbisect that wrote it.
	Kbisect string          `json:"kbisect"`
	Result  *Result         `json:"result"`
	Spec    JobSpec         `json:"spec"`
	Commits int             `json:"commits"`
	Top     []TopCommit     `json:"top"`
	Tested  []CommitSummary `json:"tested"`
	// OtherFails are the failures of other signatures than the one
	// bisected: neither pass nor fail.
	OtherFails []OtherFailure `json:"other_fails,omitempty"`
	// BestP is the probability of the most probable commit after every run.
	BestP []float64 `json:"best_p,omitempty"`
	// Runs are the journal's run, infra and revert records.
	Runs []Record `json:"runs"`
}

// Top returns the k most probable first bad commits (first fixed commits
// for a fix).
func (j *Job) Top(k int) []TopCommit {
	var out []TopCommit
	for _, pp := range j.core.Top(k) {
		if pp.P <= 0 {
			break
		}
		pos := j.answer(pp.Pos)
		out = append(out, TopCommit{Commit: j.commits[pos], Pos: pos, P: pp.P})
	}
	return out
}

// Report returns the JSON report.
func (j *Job) Report() *Report {
	r := &Report{Kbisect: version.String(), Result: j.Status(), Spec: j.Spec, Commits: len(j.commits), Top: j.Top(10), Tested: j.Tested(), BestP: j.bestP, OtherFails: j.OtherFailures()}
	for _, rec := range j.records {
		switch rec.Type {
		case RecRun, RecInfra, RecRevert:
			r.Runs = append(r.Runs, rec)
		}
	}
	return r
}

// ReportFormats are the formats WriteReport writes.
var ReportFormats = []string{"md", "html", "json"}

// WriteReport writes one report in format: "md" (or "markdown"), "html"
// or "json".
func (j *Job) WriteReport(w io.Writer, format string) error {
	switch format {
	case "md", "markdown":
		return j.WriteMarkdown(w)
	case "html":
		return j.WriteHTML(w)
	case "json":
		return j.WriteJSON(w)
	}
	return fmt.Errorf("report format %q: use %s", format, strings.Join(ReportFormats, ", "))
}

// WriteJSON writes the JSON report.
func (j *Job) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(j.Report())
}

// WriteReports writes report.md, report.html, report.json, posterior.svg
// and timeline.svg into dir (made if needed) and returns their paths. A
// job being run keeps no posterior history: its reports are those of its
// journal (OpenReport), the same as `kbisect bisect report` writes later.
func (j *Job) WriteReports(dir string) ([]string, error) {
	if !j.keepHist {
		rj, err := OpenReport(j.Dir)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		j = rj
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report directory: %w", err)
	}
	type file struct {
		name  string
		write func(io.Writer) error
	}
	files := []file{
		{"report.md", j.WriteMarkdown},
		{"report.html", j.WriteHTML},
		{"report.json", j.WriteJSON},
		{"posterior.svg", func(w io.Writer) error { _, err := io.WriteString(w, j.PosteriorSVG()); return err }},
		{"timeline.svg", func(w io.Writer) error { _, err := io.WriteString(w, j.TimelineSVG()); return err }},
	}
	var out []string
	for _, f := range files {
		var b strings.Builder
		if err := f.write(&b); err != nil {
			return out, err
		}
		name := filepath.Join(dir, f.name)
		if err := fsutil.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			return out, fmt.Errorf("report: %w", err)
		}
		out = append(out, name)
	}
	return out, nil
}

func (j *Job) summaryLines() [][2]string {
	r := j.Status()
	var rows [][2]string
	add := func(k, v string) { rows = append(rows, [2]string{k, v}) }
	add("status", r.Status)
	if r.Culprit != "" {
		c := j.commitOf(r.Culprit)
		label := j.culpritLabel()
		if r.Status != StatusFound {
			label = "most probable " + label
		}
		add(label, DescribeCommit(c))
		add("confidence", fmt.Sprintf("%.4g", r.Confidence))
	}
	if len(r.Candidates) > 1 {
		var cs []string
		for _, h := range r.Candidates {
			cs = append(cs, gitrepo.Short(h))
		}
		add("candidates", strings.Join(cs, " "))
	}
	if r.Reason != "" {
		add("reason", r.Reason)
	}
	if len(r.Flags) > 0 {
		add("flags", strings.Join(r.Flags, ", "))
	}
	if r.Revert != nil {
		add("revert check", r.Revert.Verdict+": "+r.Revert.Reason)
	}
	if r.Signature != "" {
		add("failure bisected", r.Signature)
	}
	if r.Decided != nil {
		add("decided by", r.Decided.Text(j))
	}
	if r.OtherFails > 0 {
		add("not counted", j.otherText())
	}
	add("range", fmt.Sprintf("good %s .. bad %s, %d commits", DescribeCommit(j.commits[0]), DescribeCommit(j.commits[len(j.commits)-1]), len(j.commits)-1))
	add("strategy", fmt.Sprintf("%s, confidence %.3g, unit %s", j.Spec.Options.Strategy, j.Spec.Options.Confidence, j.Spec.Options.Unit))
	add("runs", fmt.Sprintf("%d (%d builds, %d skipped, %d infrastructure errors, %d lost)", r.Runs, r.Builds, r.Skips, r.InfraErrors, r.LostRuns))
	add("test time", (time.Duration(r.TestSeconds) * time.Second).String())
	add("build time", (time.Duration(r.BuildSecs) * time.Second).String())
	add("detection rate", fmt.Sprintf("%.3g %s", r.Rate, r.RateUnit))
	if j.Spec.Exec != "" {
		add("test", "--exec "+j.Spec.Exec)
	} else if len(j.Spec.TestArgs) > 0 {
		add("test", "kernel pipeline "+strings.Join(j.Spec.TestArgs, " "))
	}
	return rows
}

// WriteMarkdown writes the Markdown report (the plots are in posterior.svg
// and timeline.svg next to it).
func (j *Job) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kbisect bisection of %s\n\n", j.Spec.Repo)
	b.WriteString("| | |\n|---|---|\n")
	for _, r := range j.summaryLines() {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], mdEscape(r[1]))
	}
	b.WriteString("\n## Posterior\n\n![posterior per run](posterior.svg)\n\n![runs over time](timeline.svg)\n\n")
	b.WriteString("| commit | P(first bad) |\n|---|---|\n")
	for _, t := range j.Top(10) {
		fmt.Fprintf(&b, "| %s | %.4g |\n", mdEscape(DescribeCommit(t.Commit)), t.P)
	}
	b.WriteString("\n## Tested commits\n\n| pos | commit | runs | failed | P(bad) | verdict |\n|---|---|---|---|---|---|\n")
	tested := j.Tested()
	sort.Slice(tested, func(a, c int) bool { return tested[a].Pos < tested[c].Pos })
	for _, t := range tested {
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %.3g | %s |\n", t.Pos, mdEscape(DescribeCommit(t.Commit)), t.Runs, t.Fails, t.ProbBad, t.Verdict)
	}
	if others := j.OtherFailures(); len(others) > 0 {
		b.WriteString("\n## Failures of other signatures (not counted)\n\n| signature | runs | commits |\n|---|---|---|\n")
		for _, o := range others {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", mdEscape(sigText(o.Signature)), runList(o.Runs, 20), shortList(o.Commits))
		}
	}
	b.WriteString("\n## Runs\n\n| # | time | commit | verdict | test | build | note |\n|---|---|---|---|---|---|---|\n")
	for _, r := range j.records {
		if r.Type != RecRun && r.Type != RecInfra && r.Type != RecRevert {
			continue
		}
		v := j.verdictText(r)
		note := r.Reason
		if r.Type == RecInfra {
			v, note = "error", r.Error
		}
		if r.Type == RecRevert {
			v = "revert " + v
		}
		build := ""
		if r.Built {
			build = fmt.Sprintf("%.1fs", r.BuildTime)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.1fs | %s | %s |\n", r.Seq, r.Time.Format("15:04:05"), gitrepo.Short(r.Commit), v, r.Elapsed, build, mdEscape(oneLine(note)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shortList writes commits as short hashes.
func shortList(hashes []string) string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = gitrepo.Short(h)
	}
	return strings.Join(out, " ")
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// WriteHTML writes the HTML report, plots inline.
func (j *Job) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := "kbisect bisection of " + j.Spec.Repo
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n", html.EscapeString(title))
	b.WriteString(`<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}
.pass{color:#2a7}.fail{color:#c33}.skip{color:#888}.error{color:#d80}.other{color:#a5a}code{font-size:90%}</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<table>\n", html.EscapeString(title))
	for _, r := range j.summaryLines() {
		fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", html.EscapeString(r[0]), html.EscapeString(r[1]))
	}
	b.WriteString("</table>\n<h2>Posterior after every run</h2>\n<p>Each row is the posterior over the commits (good left, bad right) after one run; darker is more probable. The curve is the probability of the most probable commit.</p>\n")
	b.WriteString(j.PosteriorSVG())
	b.WriteString("\n<h2>Runs over time</h2>\n<p>One lane per worker: green pass, red fail, purple fail of another signature (not counted), grey skip, orange infrastructure error, blue revert check.</p>\n")
	b.WriteString(j.TimelineSVG())
	b.WriteString("\n<h2>Most probable first bad commits</h2>\n<table><tr><th>commit</th><th>P(first bad)</th></tr>\n")
	for _, t := range j.Top(10) {
		fmt.Fprintf(&b, "<tr><td><code>%s</code> %s</td><td>%.4g</td></tr>\n", t.Commit.Short(), html.EscapeString(t.Commit.Subject), t.P)
	}
	b.WriteString("</table>\n<h2>Tested commits</h2>\n<table><tr><th>pos</th><th>commit</th><th>runs</th><th>failed</th><th>P(bad)</th><th>verdict</th></tr>\n")
	tested := j.Tested()
	sort.Slice(tested, func(a, c int) bool { return tested[a].Pos < tested[c].Pos })
	for _, t := range tested {
		fmt.Fprintf(&b, "<tr><td>%d</td><td><code>%s</code> %s</td><td>%d</td><td>%d</td><td>%.3g</td><td>%s</td></tr>\n",
			t.Pos, t.Commit.Short(), html.EscapeString(t.Commit.Subject), t.Runs, t.Fails, t.ProbBad, t.Verdict)
	}
	b.WriteString("</table>\n")
	if others := j.OtherFailures(); len(others) > 0 {
		b.WriteString("<h2>Failures of other signatures (not counted)</h2>\n<table><tr><th>signature</th><th>runs</th><th>commits</th></tr>\n")
		for _, o := range others {
			fmt.Fprintf(&b, "<tr><td><code>%s</code></td><td>%s</td><td><code>%s</code></td></tr>\n", html.EscapeString(sigText(o.Signature)), runList(o.Runs, 20), shortList(o.Commits))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("<h2>Runs</h2>\n<table><tr><th>#</th><th>time</th><th>commit</th><th>verdict</th><th>test</th><th>build</th><th>note</th></tr>\n")
	for _, r := range j.records {
		if r.Type != RecRun && r.Type != RecInfra && r.Type != RecRevert {
			continue
		}
		v, note := string(r.Verdict), r.Reason
		cls := v
		if v == string(Fail) && !j.core.Matches(r.FailSig) {
			v, cls = j.verdictText(r), "other"
		}
		if r.Type == RecInfra {
			v, note, cls = "error", r.Error, "error"
		}
		if r.Type == RecRevert {
			v = "revert " + v
		}
		build := ""
		if r.Built {
			build = fmt.Sprintf("%.1fs", r.BuildTime)
		}
		fmt.Fprintf(&b, "<tr><td>%d</td><td>%s</td><td><code>%s</code></td><td class=\"%s\">%s</td><td>%.1fs</td><td>%s</td><td>%s</td></tr>\n",
			r.Seq, r.Time.Format("15:04:05"), gitrepo.Short(r.Commit), cls, v, r.Elapsed, build, html.EscapeString(oneLine(note)))
	}
	b.WriteString("</table>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// PosteriorSVG plots the posterior after every run as a heat map (rows:
// runs, top to bottom; columns: commits, good to bad), with the
// probability of the most probable commit as a curve on the right.
func (j *Job) PosteriorSVG() string {
	const W, H, side, pad = 760, 360, 140, 30
	rows := j.posterior
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, W+side+2*pad, H+2*pad, W+side+2*pad, H+2*pad)
	b.WriteString("\n")
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>`+"\n", pad, pad, W, H)
	if len(rows) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no runs yet</text></svg>`, pad+10, pad+20)
		return b.String()
	}
	nrows := min(len(rows), 300)
	rh := float64(H) / float64(nrows)
	for r := 0; r < nrows; r++ {
		step := r * len(rows) / nrows
		if nrows < len(rows) {
			step = (r + 1) * len(rows) / nrows
			step--
		}
		row := rows[step]
		mx := 0.0
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		if mx <= 0 {
			continue
		}
		cw := float64(W) / float64(len(row))
		y := float64(pad) + float64(r)*rh
		// Merge neighbouring cells of equal shade.
		level := func(v float64) int { return int(math.Round(15 * math.Sqrt(v/mx))) }
		for c := 0; c < len(row); {
			l := level(row[c])
			e := c + 1
			for e < len(row) && level(row[e]) == l {
				e++
			}
			if l > 0 {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.2f" fill="#b22" fill-opacity="%.2f"/>`, float64(pad)+float64(c)*cw, y, float64(e-c)*cw, rh+0.3, float64(l)/15)
			}
			c = e
		}
		b.WriteString("\n")
	}
	// Best probability curve.
	x0 := float64(pad + W + 10)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, pad, side-20, H)
	var pts []string
	for i, p := range j.bestP {
		y := float64(pad) + float64(i+1)/float64(len(j.bestP))*float64(H)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x0+p*float64(side-20), y))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#236" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	conf := j.Spec.Options.Confidence
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#2a7" stroke-dasharray="3,3"/>`+"\n", x0+conf*float64(side-20), pad, x0+conf*float64(side-20), pad+H)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d">P(best)</text>`+"\n", x0, pad-8)
	fmt.Fprintf(&b, `<text x="%d" y="%d">good</text><text x="%d" y="%d" text-anchor="end">bad</text>`+"\n", pad, pad+H+14, pad+W, pad+H+14)
	fmt.Fprintf(&b, `<text x="%d" y="%d">posterior after each of %d runs, top to bottom (%d commits)</text>`+"\n", pad, pad-8, len(rows), len(j.commits)-1)
	if pos, ok := j.boundary(); ok && j.finished != nil && j.finished.Status == StatusFound {
		x := float64(pad) + (float64(pos)+0.5)/float64(len(j.commits))*float64(W)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#236" stroke-dasharray="2,4"/>`+"\n", x, pad, x, pad+H)
	}
	b.WriteString("</svg>")
	return b.String()
}

// TimelineSVG draws every run on a time axis, one lane per worker.
func (j *Job) TimelineSVG() string {
	const W, lane, pad = 860, 18, 30
	type bar struct {
		lane       int
		start, end time.Time
		color      string
		title      string
	}
	var bars []bar
	lanes := j.Spec.Options.Parallel
	var t0, t1 time.Time
	for _, r := range j.records {
		if r.Type != RecRun && r.Type != RecInfra && r.Type != RecRevert {
			continue
		}
		end := r.Time
		start := end.Add(-time.Duration(r.Wall * float64(time.Second)))
		color := map[Verdict]string{Pass: "#2a7", Fail: "#c33", Skip: "#999"}[r.Verdict]
		if r.Verdict == Fail && !j.core.Matches(r.FailSig) {
			color = "#a5a" // another bug
		}
		if r.Type == RecInfra {
			color = "#e90"
		}
		if r.Type == RecRevert {
			color = "#36c"
		}
		if color == "" {
			color = "#999"
		}
		l := r.Worker
		if l >= lanes {
			lanes = l + 1
		}
		bars = append(bars, bar{l, start, end, color, fmt.Sprintf("#%d %s %s %.1fs", r.Seq, gitrepo.Short(r.Commit), r.Verdict, r.Elapsed)})
		if t0.IsZero() || start.Before(t0) {
			t0 = start
		}
		if end.After(t1) {
			t1 = end
		}
	}
	H := lanes*lane + 2*pad
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W+2*pad, H, W+2*pad, H)
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no runs yet</text></svg>`, pad, pad)
		return b.String()
	}
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	for l := 0; l < lanes; l++ {
		fmt.Fprintf(&b, `<text x="2" y="%d">w%d</text>`+"\n", pad+l*lane+12, l)
	}
	for _, br := range bars {
		x := float64(pad) + br.start.Sub(t0).Seconds()/span*W
		w := math.Max(br.end.Sub(br.start).Seconds()/span*W, 0.8)
		fmt.Fprintf(&b, `<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n", x, pad+br.lane*lane, w, lane-4, br.color, html.EscapeString(br.title))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">0</text><text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", pad, pad-6, pad+W, pad-6, time.Duration(span*float64(time.Second)).Round(time.Millisecond).String())
	b.WriteString("</svg>")
	return b.String()
}
