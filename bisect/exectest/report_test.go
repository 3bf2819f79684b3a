package exectest

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/testenv"
)

// TestReportForDeveloper bisects a real repository and reads the reports
// as a kernel developer would: the culprit's author, date, message and
// diffstat; what to do next; a link to every failing run's log that
// opens; plots with axes, commit labels and a colour scale. A report of a
// job whose repository is gone still writes, and says so.
func TestReportForDeveloper(t *testing.T) {
	const n, culprit = 48, 31
	repoDir, hashes := makeRepo(t, n, culprit)
	repo := openRepo(t, repoDir)
	script := testenv.WriteScript(t, t.TempDir(), "flaky.sh", `
if [ -f bug ]; then
	r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
	[ "$r" -lt 39321 ] && { echo "corruption"; exit 1; }
fi
exit 0`)
	hist, err := bisect.LoadHistory(t.Context(), repo, hashes[0], hashes[n-1])
	if err != nil {
		t.Fatal(err)
	}
	spec := bisect.JobSpec{Repo: repo.Dir, Good: hashes[0], Bad: hashes[n-1], Exec: script,
		Options: bisect.Options{Confidence: 0.99, VerifyRevert: true}}
	job, res, jobDir := runJob(t, repo, spec, hist)
	if res.Status != bisect.StatusFound || res.Culprit != hashes[culprit-1] {
		t.Fatalf("%s %s, want %s", res.Status, res.Culprit, hashes[culprit-1])
	}
	short := gitrepo.Short(res.Culprit)

	for _, tc := range []struct {
		name     string
		moveRepo bool
	}{
		{"repository at hand", false},
		{"repository gone", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.moveRepo {
				moved := repoDir + ".moved"
				if err := os.Rename(repoDir, moved); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Rename(moved, repoDir) })
			}
			rj, err := bisect.OpenReport(jobDir)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if _, err := rj.WriteReports(out); err != nil {
				t.Fatal(err)
			}
			var rep bisect.Report
			readJSON(t, filepath.Join(out, "report.json"), &rep)
			d := rep.Culprit
			if d == nil || d.Commit != res.Culprit {
				t.Fatalf("culprit detail %+v", d)
			}
			md := readFile(t, filepath.Join(out, "report.md"))
			if tc.moveRepo {
				if d.Error == "" || d.Author != "" || !strings.Contains(md, "Not read from the repository") || !strings.Contains(d.Error, "kbisect bisect report "+jobDir) {
					t.Errorf("a gone repository: detail %+v; the markdown must say so and how to write it again", d)
				}
				return
			}
			// makeRepo's commits: committer (and author) T, file "bug"
			// added by the culprit, 1700000000+i seconds.
			if d.Author != "T <t@example.com>" || d.Message != "commit 31" || !strings.HasPrefix(d.Date, "2023-11-14T22:") {
				t.Errorf("author %q, message %q, date %q", d.Author, d.Message, d.Date)
			}
			if d.FilesChanged != 1 || len(d.Files) != 1 || d.Files[0] != (bisect.FileChange{Path: "bug", Added: 1}) {
				t.Errorf("diffstat %+v", d)
			}
			wantNext := []string{"git -C " + repoDir + " show " + short, "Revert check: fixed", "git -C " + repoDir + " bisect replay"}
			for _, w := range wantNext {
				if !strings.Contains(strings.Join(rep.Next, "\n"), w) {
					t.Errorf("next steps lack %q:\n%s", w, strings.Join(rep.Next, "\n"))
				}
			}
			for _, w := range []string{"## What to do next", "## The first bad commit: " + res.Culprit, "commit 31", "1 files changed, 1 insertions(+), 0 deletions(-)", "- `bug` +1 -0"} {
				if !strings.Contains(md, w) {
					t.Errorf("markdown lacks %q", w)
				}
			}
			// Every failing run links its log, and the link opens.
			html := readFile(t, filepath.Join(out, "report.html"))
			links := regexp.MustCompile(`<a href="(file://[^"]+)">log</a>`).FindAllStringSubmatch(html, -1)
			fails := 0
			for _, r := range job.Records() {
				if r.Type == bisect.RecRun && r.Verdict == bisect.Fail {
					fails++
				}
			}
			if fails == 0 || len(links) != fails {
				t.Errorf("%d log links for %d failing runs", len(links), fails)
			}
			for _, l := range links {
				u, err := url.Parse(strings.ReplaceAll(l[1], "&amp;", "&"))
				if err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(u.Path); err != nil || !strings.Contains(string(b), "corruption") {
					t.Errorf("link %s: %v %q", l[1], err, b)
				}
			}
			for _, w := range []string{"<h2>What to do next</h2>", "<pre>commit 31</pre>", "<code>bug</code>"} {
				if !strings.Contains(html, w) {
					t.Errorf("HTML lacks %q", w)
				}
			}
			// The plots are well-formed SVG with axes, commit labels
			// and the colour scale, inline in the HTML too.
			post := readFile(t, filepath.Join(out, "posterior.svg"))
			timeline := readFile(t, filepath.Join(out, "timeline.svg"))
			for _, svg := range []string{post, timeline} {
				checkXML(t, svg)
				if !strings.Contains(html, svg) {
					t.Errorf("the HTML does not hold the plot inline")
				}
			}
			for _, w := range []string{"after run", "0 " + gitrepo.Short(hashes[0]), "shade:", "first bad commit " + short, "confidence 0.99"} {
				if !strings.Contains(post, w) {
					t.Errorf("posterior plot lacks %q", w)
				}
			}
			for _, w := range []string{"since the first run began", "worker 0", "infrastructure error"} {
				if !strings.Contains(timeline, w) {
					t.Errorf("timeline lacks %q", w)
				}
			}
		})
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(readFile(t, name)), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// checkXML fails t unless s is well-formed XML.
func checkXML(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
	}
}
