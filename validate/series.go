package validate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Patch is one patch of a series, split out as one mail.
type Patch struct {
	// Name says where the patch came from: its file name, "FILE #N" for
	// the Nth mail of an mbox, or the commit of a REV..REV range.
	Name string `json:"name"`
	// Subject is the patch's subject without [PATCH] prefixes.
	Subject string `json:"subject"`
	// Files are the paths the patch touches (both sides of a rename).
	Files []string `json:"files"`
	// Mail is the path of the single-mail file (in a temporary directory).
	Mail string `json:"-"`
	// info and patch are mailinfo's outputs.
	author, email, date, message string
	diff                         string
}

// ReadSeries reads the patches of spec into files under tmp: a directory
// of *.patch (and *.diff, *.mbox, *.eml) files in name order, an mbox (or
// a single patch file), or a REV..REV range of the user's repository (as
// git format-patch writes it). Each mail is parsed as git am does (git
// mailinfo).
func ReadSeries(ctx context.Context, user *gitrepo.Repo, spec, tmp string) ([]*Patch, error) {
	if spec == "" {
		return nil, fmt.Errorf("no patches: give --patches a directory of .patch files, an mbox, or a REV..REV range")
	}
	var sources []source
	st, err := os.Stat(spec)
	switch {
	case err == nil && st.IsDir():
		entries, err := os.ReadDir(spec)
		if err != nil {
			return nil, fmt.Errorf("cannot read the patch directory %s: %w", spec, err)
		}
		for _, e := range entries {
			if e.IsDir() || !patchExt(e.Name()) {
				continue
			}
			sources = append(sources, source{name: e.Name(), path: filepath.Join(spec, e.Name())})
		}
		if len(sources) == 0 {
			return nil, fmt.Errorf("no patches in %s: it has no *.patch, *.diff, *.mbox or *.eml files (make them with git format-patch)", spec)
		}
		sort.Slice(sources, func(i, j int) bool { return sources[i].name < sources[j].name })
	case err == nil:
		sources = []source{{name: filepath.Base(spec), path: spec}}
	case strings.Contains(spec, ".."):
		mbox, names, err := formatPatch(ctx, user, spec, tmp)
		if err != nil {
			return nil, err
		}
		sources = []source{{name: spec, path: mbox, commits: names}}
	default:
		return nil, fmt.Errorf("--patches %s: no such file or directory, and not a REV..REV range", spec)
	}

	var series []*Patch
	for i, s := range sources {
		if data, err := os.ReadFile(s.path); err != nil {
			return nil, fmt.Errorf("cannot read the patch file %s: %w", s.path, err)
		} else if len(bytes.TrimSpace(data)) == 0 {
			continue // empty: no mail
		}
		mails, err := splitMbox(ctx, s.path, filepath.Join(tmp, fmt.Sprintf("split-%04d", i)))
		if err != nil {
			return nil, fmt.Errorf("patch file %s: %w", s.path, err)
		}
		for j, m := range mails {
			p := &Patch{Name: s.name, Mail: m}
			switch {
			case s.commits != nil && j < len(s.commits):
				p.Name = s.commits[j]
			case len(mails) > 1:
				p.Name = fmt.Sprintf("%s #%d", s.name, j+1)
			}
			if err := p.parse(ctx, tmp); err != nil {
				return nil, fmt.Errorf("patch %s: %w", p.Name, err)
			}
			series = append(series, p)
		}
	}
	if len(series) == 0 {
		return nil, fmt.Errorf("no patches in %s: the series is empty", spec)
	}
	return series, nil
}

type source struct {
	name, path string
	// commits names the mails of a format-patch range.
	commits []string
}

func patchExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".patch", ".diff", ".mbox", ".eml":
		return true
	}
	return false
}

// formatPatch writes the range's commits as one mbox, and returns their
// short names in order. It only reads the user's repository.
func formatPatch(ctx context.Context, user *gitrepo.Repo, spec, tmp string) (string, []string, error) {
	ends := strings.SplitN(spec, "..", 2)
	if strings.HasPrefix(ends[1], ".") {
		return "", nil, fmt.Errorf("--patches %s: use a two-dot range A..B", spec)
	}
	var full [2]string
	for i, e := range ends {
		if e == "" {
			e = "HEAD"
		}
		c, err := user.Resolve(ctx, e)
		if err != nil {
			return "", nil, fmt.Errorf("--patches %s: %w", spec, err)
		}
		full[i] = c
	}
	revs, err := user.Git(ctx, "rev-list", "--reverse", "--no-merges", full[1], "^"+full[0])
	if err != nil {
		return "", nil, fmt.Errorf("--patches %s: %w", spec, err)
	}
	commits := strings.Fields(revs)
	if len(commits) == 0 {
		return "", nil, fmt.Errorf("no patches in %s: the range holds no commits (is it reversed?)", spec)
	}
	out, err := user.Git(ctx, "format-patch", "--stdout", "--no-signature", "--no-cover-letter", "--no-numbered",
		"--no-thread", "--no-attach", "--no-color", "--no-stat", "--full-index", "--binary", full[0]+".."+full[1])
	if err != nil {
		return "", nil, fmt.Errorf("--patches %s: %w", spec, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", nil, err
	}
	path := filepath.Join(tmp, "range.mbox")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return "", nil, err
	}
	var names []string
	for _, c := range commits {
		names = append(names, gitrepo.Short(c))
	}
	return path, names, nil
}

// splitMbox splits an mbox (or a single mail without a From line) into one
// file per mail in dir, in order.
func splitMbox(ctx context.Context, path, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := runGit(ctx, "", nil, nil, "mailsplit", "-b", "-o"+dir, path); err != nil {
		return nil, fmt.Errorf("not a patch git am can read: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

// parse runs git mailinfo on the mail: author, subject, message and diff.
func (p *Patch) parse(ctx context.Context, tmp string) error {
	msg, diff := p.Mail+".msg", p.Mail+".diff"
	mail, err := os.ReadFile(p.Mail)
	if err != nil {
		return err
	}
	info, err := runGit(ctx, "", nil, mail, "mailinfo", msg, diff)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		switch k {
		case "Author":
			p.author = v
		case "Email":
			p.email = v
		case "Subject":
			p.Subject = v
		case "Date":
			p.date = v
		}
	}
	body, _ := os.ReadFile(msg)
	p.message = strings.TrimSpace(string(body))
	d, err := os.ReadFile(diff)
	if err != nil {
		return err
	}
	p.diff = diff
	p.Files = touchedFiles(d)
	if p.Subject == "" {
		p.Subject = p.Name
	}
	return nil
}

var diffGitLine = regexp.MustCompile(`^diff --git a/(\S+) b/(\S+)$`)

// touchedFiles returns the paths a patch touches, sorted.
func touchedFiles(diff []byte) []string {
	set := map[string]bool{}
	gitDiff := bytes.Contains(diff, []byte("\ndiff --git ")) || bytes.HasPrefix(diff, []byte("diff --git "))
	sc := bufio.NewScanner(bytes.NewReader(diff))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := diffGitLine.FindStringSubmatch(l); m != nil {
			set[m[1]], set[m[2]] = true, true
			continue
		}
		if gitDiff {
			// Headers of git diffs are the diff --git lines; a --- in a
			// hunk is a removed line.
			continue
		}
		for _, pre := range []string{"--- ", "+++ "} {
			if !strings.HasPrefix(l, pre) {
				continue
			}
			f := strings.TrimPrefix(l, pre)
			if i := strings.IndexByte(f, '\t'); i >= 0 {
				f = f[:i]
			}
			if f == "/dev/null" {
				continue
			}
			if _, rest, ok := strings.Cut(f, "/"); ok {
				set[rest] = true
			}
		}
	}
	var out []string
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
