package bisect

import (
	"context"
	"fmt"
	"strings"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// Commit is one commit of the search.
type Commit struct {
	Hash    string   `json:"hash"`
	Subject string   `json:"subject,omitempty"`
	Parents []string `json:"parents,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

// IsMerge reports whether c has more than one parent.
func (c Commit) IsMerge() bool { return len(c.Parents) > 1 }

// Short is the commit's abbreviated hash.
func (c Commit) Short() string { return gitrepo.Short(c.Hash) }

// History is the ordered list the search runs over: the good commit, then
// the first-parent chain from good to bad (bad last). A merge named as the
// culprit is expanded into the commits it brought in, which are inserted
// before it.
type History interface {
	// Commits returns the commits in order, good first, bad last.
	Commits() []Commit
	// Expand returns the commits merge brought in (its second parent's
	// first-parent chain not reachable from its first parent), oldest
	// first.
	Expand(ctx context.Context, merge Commit) ([]Commit, error)
}

// LinearHistory is a History that cannot expand anything (tests, the
// simulator).
type LinearHistory []Commit

// Commits implements History.
func (h LinearHistory) Commits() []Commit { return h }

// Expand implements History.
func (h LinearHistory) Expand(context.Context, Commit) ([]Commit, error) { return nil, nil }

// GitHistory is the History of a git repository between good and bad.
type GitHistory struct {
	repo    *gitrepo.Repo
	commits []Commit
	tags    map[string][]string
}

// LoadHistory checks good and bad in repo and returns the history between
// them. good and bad must be full commit hashes (see ResolveRange).
func LoadHistory(ctx context.Context, repo *gitrepo.Repo, good, bad string) (*GitHistory, error) {
	out, err := repo.Git(ctx, "rev-list", "--first-parent", "--reverse", bad, "^"+good)
	if err != nil {
		return nil, fmt.Errorf("history %s..%s in %s: %w", gitrepo.Short(good), gitrepo.Short(bad), repo.Dir, err)
	}
	hashes := append([]string{good}, strings.Fields(out)...)
	if len(hashes) < 2 {
		return nil, fmt.Errorf("no commits between good %s and bad %s", gitrepo.Short(good), gitrepo.Short(bad))
	}
	h := &GitHistory{repo: repo}
	if err := h.loadTags(ctx); err != nil {
		return nil, err
	}
	h.commits, err = h.describe(ctx, hashes)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// ResolveRange resolves good and bad in repo and checks that they make a
// range for what the bisection looks for (find: FindRegression or
// FindFix): distinct, and good an ancestor of bad (a regression) or bad an
// ancestor of good (a fix).
func ResolveRange(ctx context.Context, repo *gitrepo.Repo, good, bad, find string) (string, string, error) {
	if find != FindRegression && find != FindFix {
		return "", "", fmt.Errorf("--find %q: use regression or fix", find)
	}
	if good == "" || bad == "" {
		return "", "", fmt.Errorf("give both --good and --bad (a commit, tag or branch each)")
	}
	g, err := repo.Resolve(ctx, good)
	if err != nil {
		return "", "", fmt.Errorf("--good: %w", err)
	}
	b, err := repo.Resolve(ctx, bad)
	if err != nil {
		return "", "", fmt.Errorf("--bad: %w", err)
	}
	if g == b {
		return "", "", fmt.Errorf("--good %s and --bad %s are the same commit %s: give two commits, one where the bug shows and one where it does not", good, bad, gitrepo.Short(g))
	}
	old, new := g, b
	if find == FindFix {
		old, new = b, g
	}
	anc, err := repo.IsAncestor(ctx, old, new)
	if err != nil {
		return "", "", err
	}
	if anc {
		return g, b, nil
	}
	swapped, _ := repo.IsAncestor(ctx, new, old)
	switch {
	case find == FindFix && swapped:
		return "", "", fmt.Errorf("--bad %s is a descendant of --good %s: to find a fix, --bad is the older commit where the bug shows and --good a newer one where it is gone (or drop --find fix to find a regression)", bad, good)
	case find == FindFix:
		return "", "", fmt.Errorf("--bad %s (%s) is not an ancestor of --good %s (%s): to find a fix, give a bad commit from good's history", bad, gitrepo.Short(b), good, gitrepo.Short(g))
	case swapped:
		return "", "", fmt.Errorf("--good %s is a descendant of --bad %s: are they swapped? (to find where the bug went away, add --find fix)", good, bad)
	}
	return "", "", fmt.Errorf("--good %s (%s) is not an ancestor of --bad %s (%s): give a good commit from bad's history", good, gitrepo.Short(g), bad, gitrepo.Short(b))
}

// LoadJobHistory returns the history a bisection of spec searches: from
// good to bad along bad's first parents for a regression; for a fix, from
// bad to good reversed (good first), so that the search's "first bad
// commit" is the last commit with the bug.
func LoadJobHistory(ctx context.Context, repo *gitrepo.Repo, spec JobSpec) (History, error) {
	if !spec.IsFix() {
		return LoadHistory(ctx, repo, spec.Good, spec.Bad)
	}
	h, err := LoadHistory(ctx, repo, spec.Bad, spec.Good)
	if err != nil {
		return nil, err
	}
	return reversed(h.Commits()), nil
}

// reversed is a history searched from its newest commit back: a fix
// bisection. Merges are not expanded there: a fix that came in through a
// merge is named as that merge.
func reversed(c []Commit) LinearHistory {
	out := make(LinearHistory, len(c))
	for i := range c {
		out[len(c)-1-i] = c[i]
	}
	return out
}

func (h *GitHistory) loadTags(ctx context.Context) error {
	out, err := h.repo.Git(ctx, "for-each-ref", "--format=%(objectname) %(*objectname) %(refname:short)", "refs/tags")
	if err != nil {
		return fmt.Errorf("tags of %s: %w", h.repo.Dir, err)
	}
	h.tags = make(map[string][]string)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch len(f) {
		case 2: // lightweight tag
			h.tags[f[0]] = append(h.tags[f[0]], f[1])
		case 3: // annotated: the peeled object is the commit
			h.tags[f[1]] = append(h.tags[f[1]], f[2])
		}
	}
	return nil
}

// describe fetches subjects and parents of hashes in one git call.
func (h *GitHistory) describe(ctx context.Context, hashes []string) ([]Commit, error) {
	out := make([]Commit, 0, len(hashes))
	const chunk = 2000
	for i := 0; i < len(hashes); i += chunk {
		j := min(i+chunk, len(hashes))
		args := append([]string{"show", "-s", "--no-walk=unsorted", "--format=%H %P%x00%s"}, hashes[i:j]...)
		text, err := h.repo.Git(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("describe commits in %s: %w", h.repo.Dir, err)
		}
		for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
			ids, subj, _ := strings.Cut(line, "\x00")
			f := strings.Fields(ids)
			if len(f) == 0 {
				continue
			}
			out = append(out, Commit{Hash: f[0], Parents: f[1:], Subject: subj, Tags: h.tags[f[0]]})
		}
	}
	if len(out) != len(hashes) {
		return nil, fmt.Errorf("describe commits in %s: asked for %d, got %d", h.repo.Dir, len(hashes), len(out))
	}
	return out, nil
}

// Commits implements History.
func (h *GitHistory) Commits() []Commit { return h.commits }

// Expand implements History.
func (h *GitHistory) Expand(ctx context.Context, merge Commit) ([]Commit, error) {
	if len(merge.Parents) != 2 {
		return nil, nil // octopus merges are not expanded
	}
	out, err := h.repo.Git(ctx, "rev-list", "--first-parent", "--reverse", merge.Parents[1], "^"+merge.Parents[0])
	if err != nil {
		return nil, fmt.Errorf("expand merge %s: %w", gitrepo.Short(merge.Hash), err)
	}
	hashes := strings.Fields(out)
	if len(hashes) == 0 {
		return nil, nil
	}
	return h.describe(ctx, hashes)
}

// Repo returns the repository.
func (h *GitHistory) Repo() *gitrepo.Repo { return h.repo }
