package bisect

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/version"
)

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
	Kbisect string  `json:"kbisect"`
	Result  *Result `json:"result"`
	// Culprit is the culprit's author, date, message and diffstat.
	Culprit *CulpritDetail `json:"culprit_detail,omitempty"`
	// Next says what to do with the result.
	Next    []string        `json:"next"`
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
	r := &Report{Kbisect: version.String(), Result: j.Status(), Culprit: j.culpritDetail(), Next: j.NextSteps(), Spec: j.Spec, Commits: len(j.commits), Top: j.Top(10), Tested: j.Tested(), BestP: j.bestP, OtherFails: j.OtherFailures()}
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
	b.WriteString("\n## What to do next\n\n")
	for _, s := range j.NextSteps() {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	if d := j.culpritDetail(); d != nil {
		fmt.Fprintf(&b, "\n## The %s: %s\n\n", j.culpritLabel(), d.Commit)
		if d.Error != "" {
			fmt.Fprintf(&b, "Not read from the repository: %s.\n", d.Error)
		} else {
			fmt.Fprintf(&b, "Author: %s  \nDate: %s\n\n```\n%s\n```\n\n%s\n\n", d.Author, d.Date, d.Message, d.Stat())
			for _, f := range d.Files {
				fmt.Fprintf(&b, "- `%s` %s\n", f.Path, f.Lines())
			}
			if d.FilesChanged > len(d.Files) {
				fmt.Fprintf(&b, "- and %d more files\n", d.FilesChanged-len(d.Files))
			}
		}
	}
	b.WriteString("\n## Posterior\n\n![posterior per run](posterior.svg)\n\n![runs over time](timeline.svg)\n\n")
	fmt.Fprintf(&b, "| commit | P(%s) |\n|---|---|\n", j.culpritLabel())
	for _, t := range j.Top(10) {
		fmt.Fprintf(&b, "| %s | %.4g |\n", mdEscape(DescribeCommit(t.Commit)), t.P)
	}
	b.WriteString("\n## Tested commits\n\n| pos | commit | runs | failed | P(bad) | verdict |\n|---|---|---|---|---|---|\n")
	for _, t := range j.testedByPos() {
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %.3g | %s |\n", t.Pos, mdEscape(DescribeCommit(t.Commit)), t.Runs, t.Fails, t.ProbBad, t.Verdict)
	}
	if others := j.OtherFailures(); len(others) > 0 {
		b.WriteString("\n## Failures of other signatures (not counted)\n\n| signature | runs | commits |\n|---|---|---|\n")
		for _, o := range others {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", mdEscape(sigText(o.Signature)), runList(o.Runs, 20), shortList(o.Commits))
		}
	}
	b.WriteString("\n## Runs\n\n| # | time | commit | verdict | wire | test | build | note | artefacts |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range j.reportRuns() {
		var links []string
		for _, l := range r.Links {
			links = append(links, fmt.Sprintf("[%s](<%s>)", l.Name, l.Path))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Seq, r.Time, r.Commit, mdEscape(r.Verdict), r.Wire, r.Test, r.Build, mdEscape(r.Note), strings.Join(links, " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// testedByPos is Tested in the order of the range.
func (j *Job) testedByPos() []CommitSummary {
	tested := j.Tested()
	sort.Slice(tested, func(a, c int) bool { return tested[a].Pos < tested[c].Pos })
	return tested
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

//go:embed report.html.tmpl
var reportHTML string

// reportTemplate is the HTML report; html/template escapes every field
// and the plots are inserted as the SVG this package draws.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"minus": func(a, b int) int { return a - b },
	// An artefact by absolute path, as a file: URL a browser opens; a
	// LAVA job's URL as it is.
	"fileURL": func(p string) template.URL {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			return template.URL(p)
		}
		return template.URL((&url.URL{Scheme: "file", Path: p}).String())
	},
}).Parse(reportHTML))

// WriteHTML writes the HTML report, plots inline.
func (j *Job) WriteHTML(w io.Writer) error {
	data := struct {
		Title, CulpritLabel string
		Summary             [][2]string
		Next                []string
		Culprit             *CulpritDetail
		Posterior, Timeline template.HTML
		Top                 []TopCommit
		Tested              []CommitSummary
		Others              [][3]string
		Runs                []reportRun
	}{
		Title: "kbisect bisection of " + j.Spec.Repo, CulpritLabel: j.culpritLabel(),
		Summary: j.summaryLines(), Next: j.NextSteps(), Culprit: j.culpritDetail(),
		// The plots are SVG drawn here from numbers and escaped text.
		Posterior: template.HTML(j.PosteriorSVG()), Timeline: template.HTML(j.TimelineSVG()),
		Top: j.Top(10), Tested: j.testedByPos(), Runs: j.reportRuns(),
	}
	for _, o := range j.OtherFailures() {
		data.Others = append(data.Others, [3]string{sigText(o.Signature), runList(o.Runs, 20), shortList(o.Commits)})
	}
	return reportTemplate.Execute(w, data)
}
