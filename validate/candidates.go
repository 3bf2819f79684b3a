package validate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Candidate is one patch Candidates wrote.
type Candidate struct {
	// Group is the file or directory the patch covers.
	Group string `json:"group"`
	// Files are the files it changes; Added and Deleted count its lines.
	Files          []string `json:"files"`
	Added, Deleted int
	// Patch is the mail file (git format-patch style).
	Patch string `json:"patch"`
}

// CandidateOptions say how to split a difference.
type CandidateOptions struct {
	// From and To are the two commits: each candidate turns From's version
	// of its files into To's. To test whether a change between a good and
	// a bad release caused a bug, From is the bad one and To the good one
	// (a candidate revert on the bad side); to test a fix, From is the
	// broken release and To the fixed one (a candidate backport).
	From, To string
	// Paths limit the difference (pathspecs, e.g. arch/x86/xen); none:
	// the whole tree.
	Paths []string
	// By is how to split: "file" (the default: one candidate per file),
	// "dir" (the files of a directory together: a new file and the
	// Makefile line that builds it travel together) or "hunk" (every hunk
	// of every file apart, in file order: as a series, with validate
	// --each, the first prefix that fixes the bug names the hunk that
	// does).
	By string
	// Dir receives the patches; it must not exist or be empty.
	Dir string
}

// Candidates splits the difference between two commits of repo into
// candidate patches, one per file or directory, each applying on From:
// what `kbisect validate` then tests one at a time, when a bug's window is
// two releases apart and the history between them is not at hand.
func Candidates(ctx context.Context, repo *gitrepo.Repo, o CandidateOptions) ([]Candidate, error) {
	if o.From == "" || o.To == "" || o.Dir == "" {
		return nil, errors.New("give --from, --to and -o DIR")
	}
	from, err := repo.Resolve(ctx, o.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	to, err := repo.Resolve(ctx, o.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if ents, err := os.ReadDir(o.Dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: give a new directory for the candidate patches", o.Dir)
	}
	args := append([]string{"diff", "--numstat", "--no-renames", from, to, "--"}, o.Paths...)
	out, err := repo.Git(ctx, args...)
	if err != nil {
		return nil, err
	}
	by := o.By
	switch by {
	case "":
		by = "file"
	case "file", "dir", "hunk":
	default:
		return nil, fmt.Errorf("split by %q: use file, dir or hunk", o.By)
	}
	type stat struct{ add, del int }
	groups := map[string][]string{}
	stats := map[string]stat{}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		var st stat
		fmt.Sscan(f[0], &st.add)
		fmt.Sscan(f[1], &st.del)
		file := f[2]
		files = append(files, file)
		g := file
		if by == "dir" {
			g = path.Dir(file)
		}
		groups[g] = append(groups[g], file)
		s := stats[g]
		stats[g] = stat{s.add + st.add, s.del + st.del}
	}
	if len(groups) == 0 {
		where := "the tree"
		if len(o.Paths) > 0 {
			where = strings.Join(o.Paths, " ")
		}
		return nil, fmt.Errorf("%s and %s do not differ in %s: nothing to split", o.From, o.To, where)
	}
	// The units to write: a group's files, or a file's hunks.
	type unit struct {
		group string
		files []string
		diff  string
		st    stat
	}
	var units []unit
	if by == "hunk" {
		sort.Strings(files)
		for _, f := range files {
			d, err := repo.Git(ctx, "diff", "--binary", "--no-renames", from, to, "--", f)
			if err != nil {
				return nil, err
			}
			header, hunks := splitHunks(d)
			for k, h := range hunks {
				g := f
				if len(hunks) > 1 {
					g = fmt.Sprintf("%s#%d", f, k+1)
				}
				units = append(units, unit{g, []string{f}, header + h, hunkStat(h)})
			}
		}
	} else {
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			d, err := repo.Git(ctx, append([]string{"diff", "--binary", "--no-renames", from, to, "--"}, groups[g]...)...)
			if err != nil {
				return nil, err
			}
			units = append(units, unit{g, groups[g], d, stats[g]})
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	fromName, toName := describe(o.From, from), describe(o.To, to)
	var cands []Candidate
	for i, u := range units {
		subject := fmt.Sprintf("candidate: %s as in %s", u.group, toName)
		body := fmt.Sprintf("Turns %s's version of %s into %s's:\n\n  %s\n", fromName, u.group, toName, strings.Join(u.files, "\n  "))
		mail := fmt.Sprintf("From %s Mon Sep 17 00:00:00 2001\nFrom: kbisect candidates <kbisect@localhost>\nDate: Thu, 1 Jan 2015 00:00:00 +0000\nSubject: [PATCH] %s\n\n%s---\n%s", to, subject, body, u.diff)
		name := fmt.Sprintf("%04d-%s.patch", i+1, strings.Trim(strings.NewReplacer("/", "-", ".", "_", "#", "-").Replace(u.group), "-"))
		p := filepath.Join(o.Dir, name)
		if err := fsutil.WriteFile(p, []byte(mail), 0o644); err != nil {
			return nil, err
		}
		cands = append(cands, Candidate{Group: u.group, Files: u.files, Added: u.st.add, Deleted: u.st.del, Patch: p})
	}
	return cands, nil
}

// splitHunks splits one file's git diff into its header (up to the first
// @@) and its hunks; a diff without hunks (a binary or mode change) is one.
func splitHunks(diff string) (header string, hunks []string) {
	i := strings.Index(diff, "\n@@ ")
	if i < 0 {
		return "", []string{diff}
	}
	header, rest := diff[:i+1], diff[i+1:]
	for {
		j := strings.Index(rest[1:], "\n@@ ")
		if j < 0 {
			return header, append(hunks, rest)
		}
		hunks = append(hunks, rest[:j+2])
		rest = rest[j+2:]
	}
}

// hunkStat counts a hunk's added and deleted lines.
func hunkStat(h string) (st struct{ add, del int }) {
	for _, l := range strings.Split(h, "\n")[1:] {
		switch {
		case strings.HasPrefix(l, "+"):
			st.add++
		case strings.HasPrefix(l, "-"):
			st.del++
		}
	}
	return st
}

// describe names a commit by what the user gave when it is a name (a tag),
// else by its short hash.
func describe(given, hash string) string {
	if !strings.HasPrefix(hash, given) {
		return given
	}
	return gitrepo.Short(hash)
}
