package bisect

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// CulpritDetail is what a kernel developer reads first about the culprit:
// who wrote it, when, why, and what it touched (against its first parent).
type CulpritDetail struct {
	Commit  string `json:"commit"`
	Author  string `json:"author,omitempty"`
	Date    string `json:"date,omitempty"`
	Message string `json:"message,omitempty"`
	// Files are the files the commit changes, at most maxDetailFiles of
	// them; FilesChanged counts them all.
	Files        []FileChange `json:"files,omitempty"`
	FilesChanged int          `json:"files_changed"`
	Insertions   int          `json:"insertions"`
	Deletions    int          `json:"deletions"`
	// Error says why the rest is missing (the repository moved, say).
	Error string `json:"error,omitempty"`
}

// FileChange is one file of a commit's diffstat; Binary files count no
// lines.
type FileChange struct {
	Path    string `json:"path"`
	Added   int    `json:"added"`
	Deleted int    `json:"deleted"`
	Binary  bool   `json:"binary,omitempty"`
}

// maxDetailFiles bounds the files a report lists: a culprit found between
// two releases of a ladder touches thousands.
const maxDetailFiles = 60

// culpritDetail reads the culprit's author, date, message and diffstat
// from the job's repository (nil when the job has no culprit), once for
// all the reports of a culprit.
func (j *Job) culpritDetail() *CulpritDetail {
	r := j.Status()
	if r.Culprit == "" {
		return nil
	}
	if j.detail != nil && j.detail.Commit == r.Culprit {
		return j.detail
	}
	d := &CulpritDetail{Commit: r.Culprit}
	if err := d.read(j); err != nil {
		d.Error = fmt.Sprintf("%v; once %s is the repository again, kbisect bisect report %s writes the report with it", err, j.Spec.Repo, j.Dir)
	}
	j.detail = d
	return d
}

// read fills d with one git show: the message, then (after a NUL) the
// numstat against the first parent, as git show gives it for a commit,
// and for a merge with --diff-merges=first-parent (a root commit against
// nothing).
func (d *CulpritDetail) read(j *Job) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo := j.Repo()
	if repo == nil {
		var err error
		if repo, err = gitrepo.Open(ctx, j.Spec.Repo); err != nil {
			return err
		}
	}
	out, err := repo.Git(ctx, "show", "--numstat", "--no-renames", "--diff-merges=first-parent", "--format=%an <%ae>%n%aI%n%B%x00", d.Commit)
	if err != nil {
		return err
	}
	head, stat, ok := strings.Cut(out, "\x00")
	lines := strings.SplitN(head, "\n", 3)
	if !ok || len(lines) < 3 {
		return fmt.Errorf("git show %s: unexpected output", gitrepo.Short(d.Commit))
	}
	d.Author, d.Date, d.Message = lines[0], lines[1], strings.TrimSpace(lines[2])
	for _, line := range strings.Split(strings.TrimSpace(stat), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		fc := FileChange{Path: f[2], Binary: f[0] == "-"}
		fc.Added, _ = strconv.Atoi(f[0])
		fc.Deleted, _ = strconv.Atoi(f[1])
		d.FilesChanged++
		d.Insertions += fc.Added
		d.Deletions += fc.Deleted
		if len(d.Files) < maxDetailFiles {
			d.Files = append(d.Files, fc)
		}
	}
	return nil
}

// Lines is a file's +/- counts as the reports show them.
func (f FileChange) Lines() string {
	if f.Binary {
		return "binary"
	}
	return fmt.Sprintf("+%d -%d", f.Added, f.Deleted)
}

// Stat is the diffstat's summary line.
func (d *CulpritDetail) Stat() string {
	return fmt.Sprintf("%d files changed, %d insertions(+), %d deletions(-)", d.FilesChanged, d.Insertions, d.Deletions)
}

// reportRun is a row of the reports' run table.
type reportRun struct {
	Seq     int
	Time    string
	Commit  string
	Verdict string
	// Class is the verdict's colour: pass, fail, other (a fail of another
	// signature), skip, error.
	Class string
	// Wire is a kernel test's wire verdict (encap, decap, clean, ...).
	Wire  string
	Test  string
	Build string
	Note  string
	// Links are a failing run's artefacts: consoles, captures, keys.
	Links []reportLink
}

// reportLink is an artefact of a run: an absolute path, or the URL of a
// LAVA job.
type reportLink struct{ Name, Path string }

// runEvidence is what the reports read of a run's evidence: the kernel
// pipeline's run report (kbisect run --json) or an --exec run's.
type runEvidence struct {
	Wire *struct {
		Verdict string `json:"verdict"`
	} `json:"wire"`
	RunDir     string   `json:"run_dir"`
	Pcaps      []string `json:"pcaps"`
	Keys       string   `json:"keys"`
	ESPSA      string   `json:"esp_sa"`
	XenConsole string   `json:"xen_console"`
	Guests     []struct {
		Role    string `json:"role"`
		Console string `json:"console"`
	} `json:"guests"`
	Log    string `json:"log"`
	Remote *struct {
		URL  string   `json:"url"`
		Jobs []string `json:"jobs"`
	} `json:"remote"`
}

// links lists the run's artefacts, each once.
func (e *runEvidence) links() []reportLink {
	var out []reportLink
	add := func(name, path string) {
		if path != "" {
			out = append(out, reportLink{name, path})
		}
	}
	for _, g := range e.Guests {
		add(g.Role+" console", g.Console)
	}
	add("Xen console", e.XenConsole)
	for i, p := range e.Pcaps {
		name := "pcap"
		if len(e.Pcaps) > 1 {
			name = fmt.Sprintf("pcap %d", i+1)
		}
		add(name, p)
	}
	add("keys", e.Keys)
	add("esp_sa", e.ESPSA)
	add("log", e.Log)
	add("run directory", e.RunDir)
	if e.Remote != nil {
		for _, id := range e.Remote.Jobs {
			add("LAVA job "+id, strings.TrimSuffix(e.Remote.URL, "/")+"/scheduler/job/"+id)
		}
	}
	return out
}

// reportRuns are the rows of the run table: runs, infrastructure errors
// and revert checks, in journal order.
func (j *Job) reportRuns() []reportRun {
	var out []reportRun
	for _, r := range j.records {
		if r.Type != RecRun && r.Type != RecInfra && r.Type != RecRevert {
			continue
		}
		row := reportRun{Seq: r.Seq, Time: r.Time.Format("15:04:05"), Commit: gitrepo.Short(r.Commit),
			Verdict: string(r.Verdict), Class: string(r.Verdict), Test: fmt.Sprintf("%.1fs", r.Elapsed), Note: oneLine(r.Reason)}
		if r.Verdict == Fail && !j.core.Matches(r.FailSig) {
			row.Verdict, row.Class = j.verdictText(r), "other"
		}
		if r.Type == RecInfra {
			row.Verdict, row.Class, row.Note = "error", "error", oneLine(r.Error)
		}
		if r.Type == RecRevert {
			row.Verdict = "revert " + row.Verdict
		}
		if r.Built {
			row.Build = fmt.Sprintf("%.1fs", r.BuildTime)
		}
		var ev runEvidence
		if len(r.Evidence) > 0 && json.Unmarshal(r.Evidence, &ev) == nil {
			if ev.Wire != nil {
				row.Wire = ev.Wire.Verdict
			}
			if r.Verdict == Fail || r.Type == RecInfra {
				row.Links = ev.links()
			}
		}
		out = append(out, row)
	}
	return out
}

// NextSteps says what a kernel developer can do with the result: read
// the culprit, check it, go on by hand in git, or give the search more.
func (j *Job) NextSteps() []string {
	r := j.Status()
	repo := j.Spec.Repo
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	switch r.Status {
	case StatusFound:
		add("Read the %s: git -C %s show %s", j.culpritLabel(), repo, gitrepo.Short(r.Culprit))
		release := slices.ContainsFunc(r.Flags, func(f string) bool { return strings.HasPrefix(f, "tag:") })
		switch {
		case r.Revert != nil:
			add("Revert check: %s (%s).", r.Revert.Verdict, r.Revert.Reason)
		case release && r.Decided != nil:
			// A ladder of releases: the change is somewhere in the
			// release's difference, whose history is not at hand.
			from, to, what := r.Culprit, r.Decided.Good, "revert"
			if to == "" {
				to = j.Spec.Good
			}
			if j.Spec.IsFix() {
				from, to, what = r.Decided.Bad, r.Culprit, "backport"
			}
			add("The %s is a whole release. Split the difference into candidate %ss and validate them on %s (see kbisect candidates --help): kbisect candidates --repo %s --from %s --to %s --by file --path DIR -o CANDS; kbisect validate --repo %s --base %s --patches CANDS/PATCH, with this bisection's test flags.",
				j.culpritLabel(), what, DescribeCommit(j.commitOf(from)), repo, gitrepo.Short(from), gitrepo.Short(to), repo, gitrepo.Short(from))
		case j.Spec.IsFix():
			add("Check the fix as a backport onto the release with the bug: kbisect validate --repo %s --base %s --patches %s^..%s, with this bisection's test flags.",
				repo, gitrepo.Short(j.Spec.Bad), gitrepo.Short(r.Culprit), gitrepo.Short(r.Culprit))
		default:
			add("The revert check was not run: bisect with --verify-revert to test bad with the culprit reverted.")
		}
		if len(r.Flags) > 0 {
			add("Mind the warning: %s.", flagText(r.Flags))
		}
	case StatusInconclusive:
		if len(r.Candidates) > 1 {
			add("The culprit is one of %d commits that could not all be tested: read them (git -C %s show %s).", len(r.Candidates), repo, shortList(r.Candidates))
		} else {
			add("Give the search more: bisect again with a larger --max-runs or --max-time (and another --job).")
		}
	case StatusNoRegression:
		add("Bad did not fail within the budget (%s): check the test on bad, or give a larger --budget.", r.Reason)
	default:
		add("Fix the cause (%s), then continue: kbisect bisect resume %s", r.Reason, j.Dir)
	}
	if r.Status == StatusFound || r.Status == StatusInconclusive {
		add("Go on by hand in git (what the runs decided, nothing more): kbisect bisect log %s > bisect.log; git -C %s bisect replay bisect.log", j.Dir, repo)
	}
	return out
}
