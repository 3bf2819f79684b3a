package exectest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/internal/testenv"

	"github.com/kbisect/kbisect/bisect"
)

func TestExitCodes(t *testing.T) {
	repoDir, hashes := makeRepo(t, 3, 2)
	repo := openRepo(t, repoDir)
	tests := []struct {
		name    string
		script  string
		budget  time.Duration
		want    bisect.Verdict
		wantErr string
		sig     string // the failure signature
	}{
		{"good", "echo fine; exit 0", 0, bisect.Pass, "", ""},
		{"bad", "echo corrupted byte at 42; exit 1", 0, bisect.Fail, "", ""},
		{"bad 124", "exit 124", 0, bisect.Fail, "", ""},
		{"not found 127", "no-such-program-kbisect", 0, "", "exited 127", ""},
		{"cannot run 126", "exit 126", 0, "", "exited 126", ""},
		{"signed", "echo 'KBISECT-SIGNATURE: checksum mismatch'; exit 1", 0, bisect.Fail, "", "checksum mismatch"},
		{"oops", "echo '[ 1.5] BUG: kernel NULL pointer dereference, address: 0000000000000010'; exit 3", 0, bisect.Fail, "", "oops: BUG: kernel NULL pointer dereference, address: N"},
		{"a pass has none", "echo 'KBISECT-SIGNATURE: x'", 0, bisect.Pass, "", ""},
		{"skip", "exit 125", 0, bisect.Skip, "", ""},
		{"abort 128", "exit 128", 0, "", "exited 128", ""},
		{"abort 255", "exit 255", 0, "", "exited 255", ""},
		{"killed", "kill -9 $$", 0, "", "exited 137", ""},
		{"timeout", "sleep 30", 300 * time.Millisecond, "", "timed out", ""},
		{"sees the tree", "test -f n && test \"$(cat n)\" = 3", 0, bisect.Pass, "", ""},
		{"sees the bug", "test -f bug", 0, bisect.Pass, "", ""},
		{"environment", "test \"$KBISECT_COMMIT\" = \"$(git rev-parse HEAD)\" && test -n \"$KBISECT_JOB\"", 0, bisect.Pass, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			script := testenv.WriteScript(t, dir, "test.sh", tc.script)
			tst := New(repo, script, dir, 1)
			start := time.Now()
			out, err := tst.Test(context.Background(), hashes[2], tc.budget)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error saying %q", out.Verdict, err, tc.wantErr)
				}
				if tc.budget > 0 && time.Since(start) > 10*time.Second {
					t.Errorf("timeout took %s", time.Since(start))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Verdict != tc.want {
				t.Fatalf("verdict %s, want %s (%s)", out.Verdict, tc.want, out.Reason)
			}
			if out.FailSig != tc.sig {
				t.Errorf("failure signature %q, want %q", out.FailSig, tc.sig)
			}
			if !out.Built || !strings.HasPrefix(out.Signature, "tree:") {
				t.Errorf("first test of a commit: built %v, signature %q", out.Built, out.Signature)
			}
			var ev evidence
			if err := json.Unmarshal(out.Evidence, &ev); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(ev.Log); err != nil {
				t.Errorf("run log: %v", err)
			}
			if tc.want == bisect.Fail && !strings.Contains(out.Reason, "corrupted byte") && tc.name == "bad" {
				t.Errorf("reason %q does not quote the output", out.Reason)
			}
			// The same commit again needs no checkout.
			out2, err := tst.Test(context.Background(), hashes[2], tc.budget)
			if err != nil || out2.Built {
				t.Errorf("second test: built %v, %v", out2.Built, err)
			}
		})
	}
}

func TestRevertConflict(t *testing.T) {
	repoDir, hashes := makeRepo(t, 4, 4)
	repo := openRepo(t, repoDir)
	dir := t.TempDir()
	tst := New(repo, testenv.WriteScript(t, dir, "t.sh", "test ! -f n || test \"$(cat n)\" != 2"), dir, 1)
	// Commit 2 changed n, and commit 3 changed it again: no clean revert.
	out, err := tst.TestRevert(context.Background(), hashes[1], hashes[2], 0)
	if err != nil || out.Verdict != bisect.Skip || !strings.Contains(out.Reason, "does not apply") {
		t.Fatalf("got %+v, %v; want a skip: does not apply", out, err)
	}
	// Commit 4 only added bug: reverting it on top of itself applies.
	out, err = tst.TestRevert(context.Background(), hashes[3], hashes[3], 0)
	if err != nil || out.Verdict != bisect.Pass {
		t.Fatalf("got %+v, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "work", "0", "bug")); !os.IsNotExist(err) {
		t.Errorf("bug still there after the revert: %v", err)
	}
}

// TestBisectRealRepo bisects a real repository with a sporadic test, checks
// the answer, that the user's repository (with a git bisect of its own in
// progress) is untouched, that the log replays in git, and the revert check.
func TestBisectRealRepo(t *testing.T) {
	const n, culprit = 200, 83
	repoDir, hashes := makeRepo(t, n, culprit)
	// The user is in the middle of a bisection of their own, with local
	// changes.
	gitT(t, repoDir, "bisect", "start", hashes[n-1], hashes[0])
	gitT(t, repoDir, "bisect", "skip")
	os.WriteFile(filepath.Join(repoDir, "untracked.txt"), []byte("mine\n"), 0o644)
	os.WriteFile(filepath.Join(repoDir, "n"), []byte("local edit\n"), 0o644)
	before := snapshot(t, repoDir)
	if before.bisect == "" {
		t.Fatal("no BISECT_* files to watch")
	}

	repo := openRepo(t, repoDir)
	ctx := context.Background()
	good, bad, err := bisect.ResolveRange(ctx, repo, hashes[0], hashes[n-1], bisect.FindRegression)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := bisect.LoadHistory(ctx, repo, good, bad)
	if err != nil {
		t.Fatal(err)
	}
	jobDir := t.TempDir()
	// Fails 40% of the runs when the bug is there; randomness from the
	// kernel, so nothing repeats.
	script := testenv.WriteScript(t, t.TempDir(), "flaky.sh", `
if [ -f bug ]; then
	r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
	[ "$r" -lt 26214 ] && { echo "corruption"; exit 1; }
fi
exit 0`)
	spec := bisect.JobSpec{Repo: repo.Dir, Good: good, Bad: bad, Exec: script,
		Options: bisect.Options{Confidence: 0.999, Parallel: 2, VerifyRevert: true, BuildCost: 3}}
	job, err := bisect.Create(jobDir, spec, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Run(ctx, New(repo, script, jobDir, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != bisect.StatusFound || res.Culprit != hashes[culprit-1] {
		t.Fatalf("got %s %s, want %s", res.Status, res.Culprit, hashes[culprit-1])
	}
	if res.Revert == nil || res.Revert.Verdict != "fixed" {
		t.Errorf("revert check: %+v", res.Revert)
	}
	if ws, _ := filepath.Glob(filepath.Join(jobDir, "work", "*")); len(ws) != 2 {
		t.Errorf("%d checkouts for --parallel 2: %v", len(ws), ws)
	}
	if after := snapshot(t, repoDir); after != before {
		t.Errorf("the user's repository changed:\nbefore %+v\nafter  %+v", before, after)
	}

	// The log replays in a throwaway clone of the repository.
	var log bytes.Buffer
	if err := job.WriteLog(&log); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "bisect.log")
	os.WriteFile(logFile, log.Bytes(), 0o644)
	clone := filepath.Join(t.TempDir(), "clone")
	gitT(t, "", "clone", "-q", repoDir, clone)
	cmd := exec.Command("git", "-C", clone, "bisect", "replay", logFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git bisect replay: %v\n%s\nlog:\n%s", err, out, log.String())
	}
	if !strings.Contains(string(out), hashes[culprit-1]+" is the first bad commit") {
		t.Errorf("git bisect replay did not name %s:\n%s\nlog:\n%s", hashes[culprit-1], out, log.String())
	}
}

// TestBisectMerge bisects a history with a merge: the bug is on the merged
// branch. The first-parent search names the merge, expands it into the
// commits it brought in, and finds the culprit among them.
func TestBisectMerge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	gitT(t, "", "init", "-q", "-b", "main", dir)
	commit := func(name, file, content string) string {
		os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644)
		gitT(t, dir, "add", file)
		gitT(t, dir, "commit", "-q", "-m", name)
		return strings.TrimSpace(gitT(t, dir, "rev-parse", "HEAD"))
	}
	var main []string
	for i := 1; i <= 5; i++ {
		main = append(main, commit("main "+string(rune('0'+i)), "m", strings.Repeat("x", i)))
	}
	gitT(t, dir, "checkout", "-q", "-b", "side")
	var side []string
	for i := 1; i <= 6; i++ {
		f, c := "s", strings.Repeat("s", i)
		if i == 3 {
			f, c = "bug", "1"
		}
		side = append(side, commit("side "+string(rune('0'+i)), f, c))
	}
	gitT(t, dir, "checkout", "-q", "main")
	for i := 6; i <= 9; i++ {
		main = append(main, commit("main "+string(rune('0'+i)), "m", strings.Repeat("x", i)))
	}
	gitT(t, dir, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
	merge := strings.TrimSpace(gitT(t, dir, "rev-parse", "HEAD"))
	for i := 10; i <= 14; i++ {
		main = append(main, commit("main "+string(rune('a'+i)), "m", strings.Repeat("x", i)))
	}
	repo := openRepo(t, dir)
	ctx := context.Background()
	good, bad, err := bisect.ResolveRange(ctx, repo, main[0], "main", bisect.FindRegression)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := bisect.LoadHistory(ctx, repo, good, bad)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range hist.Commits() {
		for _, s := range side {
			if c.Hash == s {
				t.Fatalf("side commit %s in the first-parent history", s)
			}
		}
	}
	jobDir := t.TempDir()
	script := testenv.WriteScript(t, t.TempDir(), "flaky.sh", `
if [ -f bug ]; then
	r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
	[ "$r" -lt 39321 ] && exit 1
fi
exit 0`)
	job, err := bisect.Create(jobDir, bisect.JobSpec{Repo: repo.Dir, Good: good, Bad: bad, Exec: script,
		Options: bisect.Options{Confidence: 0.999, BuildCost: 3}}, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Run(ctx, New(repo, script, jobDir, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != bisect.StatusFound || res.Culprit != side[2] {
		t.Fatalf("got %s %s (%s), want side commit %s (merge %s)", res.Status, res.Culprit, res.Subject, side[2], merge)
	}
	var expanded bool
	for _, r := range job.Records() {
		if r.Type == bisect.RecExpand && r.Commit == merge && len(r.Expanded) == len(side) {
			expanded = true
		}
	}
	if !expanded {
		t.Errorf("the merge was not expanded into its %d commits", len(side))
	}
}

// TestBisectFix looks for a fix: the bug (a sporadic failure) is in the
// older commits and one commit removes it. --find fix names that commit
// with the confidence asked, on a real repository, and the log it writes
// (with git's terms broken/fixed) replays in git to the same commit.
func TestBisectFix(t *testing.T) {
	const n, fix = 120, 71
	repoDir, hashes := makeFixRepo(t, n, fix)
	repo := openRepo(t, repoDir)
	ctx := context.Background()
	// The newest commit is good (fixed), the oldest bad (the bug shows).
	if _, _, err := bisect.ResolveRange(ctx, repo, hashes[0], hashes[n-1], bisect.FindFix); err == nil || !strings.Contains(err.Error(), "to find a fix, --bad is the older commit") {
		t.Errorf("swapped range: %v", err)
	}
	if _, _, err := bisect.ResolveRange(ctx, repo, hashes[n-1], hashes[0], "fixes"); err == nil || !strings.Contains(err.Error(), `--find "fixes": use regression or fix`) {
		t.Errorf("unknown --find: %v", err)
	}
	good, bad, err := bisect.ResolveRange(ctx, repo, hashes[n-1], hashes[0], bisect.FindFix)
	if err != nil {
		t.Fatal(err)
	}
	spec := bisect.JobSpec{Repo: repo.Dir, Good: good, Bad: bad, Find: bisect.FindFix,
		Options: bisect.Options{Confidence: 0.99}}
	hist, err := bisect.LoadJobHistory(ctx, repo, spec)
	if err != nil {
		t.Fatal(err)
	}
	if c := hist.Commits(); c[0].Hash != good || c[len(c)-1].Hash != bad {
		t.Fatalf("history runs %s .. %s, want good %s first and bad %s last", c[0].Short(), c[len(c)-1].Short(), gitrepo.Short(good), gitrepo.Short(bad))
	}
	// Fails 30% of the runs while the bug is there, from a stream seeded
	// by the run number: the same every time the test runs.
	spec.Exec = testenv.WriteScript(t, t.TempDir(), "flaky.sh", `
if [ -f bug ]; then
	r=$(printf 'fix-%s' "$KBISECT_RUN" | cksum | cut -d' ' -f1)
	[ $((r % 100)) -lt 30 ] && { echo "corruption"; exit 1; }
fi
exit 0`)
	job, res, jobDir := runJob(t, repo, spec, hist)
	if res.Status != bisect.StatusFound || res.Culprit != hashes[fix-1] || res.Find != bisect.FindFix {
		t.Fatalf("got %s %s (%s), want the fix %s", res.Status, res.Culprit, res.Find, hashes[fix-1])
	}
	if res.Confidence < 0.99 {
		t.Errorf("confidence %.4f, want >= 0.99", res.Confidence)
	}
	var text bytes.Buffer
	job.WriteResult(&text, res)
	if !strings.HasPrefix(text.String(), "first fixed commit: "+hashes[fix-1]) {
		t.Errorf("result text:\n%s", text.String())
	}
	_, out, log := replayLog(t, job, repoDir)
	if !strings.Contains(out, hashes[fix-1]+" is the first fixed commit") {
		t.Errorf("git bisect replay did not name %s:\n%s\nlog:\n%s", hashes[fix-1], out, log)
	}
	job.Close()
	// A fix bisection resumes with its repository (the kernel pipeline
	// builds from it).
	again, err := bisect.ResumeDir(ctx, jobDir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Repo() == nil || again.Repo().Dir != repo.Dir {
		t.Errorf("resumed fix job's repository %v, want %s", again.Repo(), repo.Dir)
	}
	again.Close()
}

// TestUnfinishedLogReplay: the git bisect log of a bisection stopped early
// (inconclusive) marks only what the posterior holds at the job's
// confidence, so `git bisect replay` of it never leaves the culprit outside
// the range git has left.
func TestUnfinishedLogReplay(t *testing.T) {
	const n, culprit = 48, 30
	repoDir, hashes := makeRepo(t, n, culprit)
	repo := openRepo(t, repoDir)
	ctx := context.Background()
	for _, maxRuns := range []int{3, 6, 10, 16} {
		t.Run(fmt.Sprintf("%d-runs", maxRuns), func(t *testing.T) {
			spec := bisect.JobSpec{Repo: repo.Dir, Good: hashes[0], Bad: hashes[n-1],
				Options: bisect.Options{Confidence: 0.99, MaxRuns: maxRuns}}
			hist, err := bisect.LoadJobHistory(ctx, repo, spec)
			if err != nil {
				t.Fatal(err)
			}
			spec.Exec = flakyScript(t, 300, "0")
			job, res, _ := runJob(t, repo, spec, hist)
			clone, _, log := replayLog(t, job, repoDir)
			goods := strings.Fields(gitT(t, clone, "for-each-ref", "--format=%(refname)", "refs/bisect/good-*"))
			left := gitT(t, clone, append([]string{"rev-list", "refs/bisect/bad", "--not"}, goods...)...)
			if !strings.Contains(left, hashes[culprit-1]) {
				t.Errorf("%s after %d runs: git's range left out the culprit %s\nlog:\n%s", res.Status, maxRuns, hashes[culprit-1], log)
			}
		})
	}
}

// runJob creates a job for spec in a new directory and runs it with the
// command tester, one worker.
func runJob(t *testing.T, repo *gitrepo.Repo, spec bisect.JobSpec, hist bisect.History) (*bisect.Job, *bisect.Result, string) {
	t.Helper()
	jobDir := t.TempDir()
	job, err := bisect.Create(jobDir, spec, hist)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { job.Close() })
	res, err := job.Run(context.Background(), New(repo, spec.Exec, jobDir, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	return job, res, jobDir
}

// replayLog writes job's git bisect log and replays it in a new clone of
// repoDir; it returns the clone, git's output and the log.
func replayLog(t *testing.T, job *bisect.Job, repoDir string) (clone, out, log string) {
	t.Helper()
	var b bytes.Buffer
	if err := job.WriteLog(&b); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "bisect.log")
	os.WriteFile(logFile, b.Bytes(), 0o644)
	clone = filepath.Join(t.TempDir(), "clone")
	gitT(t, "", "clone", "-q", repoDir, clone)
	o, err := exec.Command("git", "-C", clone, "bisect", "replay", logFile).CombinedOutput()
	if err != nil {
		t.Fatalf("git bisect replay: %v\n%s\nlog:\n%s", err, o, b.String())
	}
	return clone, string(o), b.String()
}
