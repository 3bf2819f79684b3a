package validate

import (
	"context"
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
	// ByDir groups the files of a directory into one candidate (a new
	// file and the Makefile line that builds it then travel together);
	// otherwise there is one candidate per file.
	ByDir bool
	// Dir receives the patches; it must not exist or be empty.
	Dir string
}

// Candidates splits the difference between two commits of repo into
// candidate patches, one per file or directory, each applying on From:
// what `kbisect validate` then tests one at a time, when a bug's window is
// two releases apart and the history between them is not at hand.
func Candidates(ctx context.Context, repo *gitrepo.Repo, o CandidateOptions) ([]Candidate, error) {
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
	type stat struct{ add, del int }
	groups := map[string][]string{}
	stats := map[string]stat{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) != 3 {
			continue
		}
		var st stat
		fmt.Sscan(f[0], &st.add)
		fmt.Sscan(f[1], &st.del)
		file := f[2]
		g := file
		if o.ByDir {
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
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	fromName, toName := describe(o.From, from), describe(o.To, to)
	var cands []Candidate
	for i, g := range names {
		files := groups[g]
		diff, err := repo.Git(ctx, append([]string{"diff", "--binary", "--no-renames", from, to, "--"}, files...)...)
		if err != nil {
			return nil, err
		}
		subject := fmt.Sprintf("candidate: %s as in %s", g, toName)
		body := fmt.Sprintf("Turns %s's version of %d file(s) under %s into %s's:\n\n  %s\n", fromName, len(files), g, toName, strings.Join(files, "\n  "))
		mail := fmt.Sprintf("From %s Mon Sep 17 00:00:00 2001\nFrom: kbisect candidates <kbisect@localhost>\nDate: Thu, 1 Jan 2015 00:00:00 +0000\nSubject: [PATCH] %s\n\n%s---\n%s", to, subject, body, diff)
		name := fmt.Sprintf("%04d-%s.patch", i+1, strings.Trim(strings.NewReplacer("/", "-", ".", "_").Replace(g), "-"))
		p := filepath.Join(o.Dir, name)
		if err := fsutil.WriteFile(p, []byte(mail), 0o644); err != nil {
			return nil, err
		}
		st := stats[g]
		cands = append(cands, Candidate{Group: g, Files: files, Added: st.add, Deleted: st.del, Patch: p})
	}
	return cands, nil
}

// describe names a commit by what the user gave when it is a name (a tag),
// else by its short hash.
func describe(given, hash string) string {
	if !strings.HasPrefix(hash, given) {
		return given
	}
	return gitrepo.Short(hash)
}
