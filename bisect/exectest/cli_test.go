package exectest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/testenv"
)

// buildCLI builds the kbisect command into a temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kbisect")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/kbisect")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/kbisect: %v\n%s", err, out)
	}
	return bin
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	return runCLIWithin(t, 10*time.Minute, bin, args...)
}

// flakyScript fails with probability perMille/1000 when the tree has the
// bug, from a random stream seeded by a counter in the job directory; it
// records "run commit verdict" in the job directory when it completes.
func flakyScript(t *testing.T, perMille int, sleep string) string {
	return testenv.WriteScript(t, t.TempDir(), "flaky.sh", `
c=$(cat "$KBISECT_JOB/counter" 2>/dev/null || echo 0); c=$((c+1)); echo $c > "$KBISECT_JOB/counter"
r=$(printf 'seed-%s' "$c" | cksum | cut -d' ' -f1)
res=0
if [ -f bug ] && [ $((r % 1000)) -lt `+strconv.Itoa(perMille)+` ]; then res=1; fi
sleep `+sleep+`
echo "$KBISECT_RUN $KBISECT_COMMIT $res" >> "$KBISECT_JOB/runs.txt"
exit $res`)
}

func journalRuns(t *testing.T, dir string) []bisect.Record {
	t.Helper()
	recs, err := bisect.ReadJournal(dir)
	if err != nil {
		return nil
	}
	var out []bisect.Record
	for _, r := range recs {
		if r.Type == bisect.RecRun {
			out = append(out, r)
		}
	}
	return out
}

// TestCLIKillResume runs the kbisect binary on a real repository, kills it
// with SIGKILL mid-bisection, resumes, and checks the answer and that no
// completed run was done twice. It also checks that a second bisection in
// the same job directory is refused while the first runs, and that another
// job directory is fine.
func TestCLIKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	const n, culprit = 300, 187
	repoDir, hashes := makeRepo(t, n, culprit)
	before := snapshot(t, repoDir)
	script := flakyScript(t, 500, "0.02")
	job := filepath.Join(t.TempDir(), "job")
	args := []string{"bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", script,
		"--job", job, "--confidence", "0.999", "--build-cost", "3", "--json"}

	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for some runs, then make the checks that need it running.
	deadline := time.Now().Add(2 * time.Minute)
	for len(journalRuns(t, job)) < 12 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := runCLI(t, bin, args...)
	if second.code != 2 || !strings.Contains(second.stderr, "in use by another kbisect") {
		t.Errorf("second bisection in the same job dir: exit %d, %q", second.code, second.stderr)
	}
	if st := runCLI(t, bin, "bisect", "status", job); st.code != 0 || !strings.Contains(st.stdout, "status:   running") {
		t.Errorf("status while running: %d %q %q", st.code, st.stdout, st.stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killedAt := len(journalRuns(t, job))

	// Another job directory on the same repository runs fine.
	other := runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", "test ! -f bug",
		"--job", filepath.Join(t.TempDir(), "other"), "--json")
	var ores bisect.Result
	if err := json.Unmarshal([]byte(lastLine(other.stdout)), &ores); err != nil || ores.Culprit != hashes[culprit-1] {
		t.Errorf("other job: exit %d, %q, %q", other.code, other.stdout, other.stderr)
	}

	if st := runCLI(t, bin, "bisect", "status", job); !strings.Contains(st.stdout, "status:   interrupted") {
		t.Errorf("status after kill -9: %q", st.stdout)
	}
	res := runCLI(t, bin, "bisect", "resume", job, "--json")
	if res.code != 0 {
		t.Fatalf("resume: exit %d: %s", res.code, res.stderr)
	}
	var r bisect.Result
	if err := json.Unmarshal([]byte(lastLine(res.stdout)), &r); err != nil {
		t.Fatalf("resume --json: %v: %q", err, res.stdout)
	}
	if r.Status != bisect.StatusFound || r.Culprit != hashes[culprit-1] || r.Confidence < 0.999 {
		t.Fatalf("after resume: %+v, want %s", r, hashes[culprit-1])
	}
	runs := journalRuns(t, job)
	if len(runs) <= killedAt || r.Runs != len(runs) || r.Builds == 0 {
		t.Errorf("%d runs before the kill, %d after; result says %d runs, %d builds", killedAt, len(runs), r.Runs, r.Builds)
	}
	if r.LostRuns > 1 {
		t.Errorf("%d runs lost, want at most the one in flight", r.LostRuns)
	}
	// Every journaled run was done once, and at most the run in flight at
	// the kill was done without being journaled.
	done := map[int]string{}
	var extra int
	f, err := os.Open(filepath.Join(job, "runs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		seq, _ := strconv.Atoi(fs[0])
		if _, dup := done[seq]; dup {
			t.Errorf("run %d done twice", seq)
		}
		done[seq] = fs[1]
	}
	f.Close()
	journaled := map[int]bool{}
	for _, rec := range runs {
		if journaled[rec.Seq] {
			t.Errorf("run %d journaled twice", rec.Seq)
		}
		journaled[rec.Seq] = true
		if done[rec.Seq] != rec.Commit {
			t.Errorf("journal run %d on %.12s, the script ran %q", rec.Seq, rec.Commit, done[rec.Seq])
		}
	}
	for seq := range done {
		if !journaled[seq] {
			extra++
		}
	}
	if extra > 1 {
		t.Errorf("%d completed runs missing from the journal, want at most 1", extra)
	}
	if after := snapshot(t, repoDir); after != before {
		t.Errorf("the user's repository changed:\nbefore %+v\nafter  %+v", before, after)
	}

	// log replays in git.
	lg := runCLI(t, bin, "bisect", "log", job)
	logFile := filepath.Join(t.TempDir(), "log")
	os.WriteFile(logFile, []byte(lg.stdout), 0o644)
	clone := filepath.Join(t.TempDir(), "clone")
	gitT(t, "", "clone", "-q", repoDir, clone)
	if out, err := exec.Command("git", "-C", clone, "bisect", "replay", logFile).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), hashes[culprit-1]+" is the first bad commit") {
		t.Errorf("git bisect replay: %v\n%s", err, out)
	}
	// The job wrote its reports when it ended; bisect report writes
	// them again.
	if b, err := os.ReadFile(filepath.Join(job, "report.json")); err != nil || !bytes.Contains(b, []byte(`"status": "found"`)) {
		t.Errorf("no report.json at the end of the job: %v", err)
	}
	os.Remove(filepath.Join(job, "report.html"))
	rep := runCLI(t, bin, "bisect", "report", job)
	for _, name := range []string{"report.md", "report.html", "report.json", "posterior.svg", "timeline.svg"} {
		if !strings.Contains(rep.stdout, name) {
			t.Errorf("report did not write %s: %q %q", name, rep.stdout, rep.stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(job, "report.html")); !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte(hashes[culprit-1][:12])) {
		t.Errorf("report.html lacks the plots or the culprit")
	}
	if js := runCLI(t, bin, "bisect", "report", job, "--format", "json"); !strings.Contains(js.stdout, `"status": "found"`) {
		t.Errorf("json report: %.300s", js.stdout)
	}
}

// TestCLIInterrupt sends SIGINT (Ctrl-C) mid-run: kbisect stops the run in
// flight, leaves the journal consistent and exits 130.
func TestCLIInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 50, 20)
	job := filepath.Join(t.TempDir(), "job")
	cmd := exec.Command(bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main",
		"--exec", flakyScript(t, 300, "0.3"), "--job", job)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for len(journalRuns(t, job)) < 3 {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a run is in flight
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130; %s", err, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
	if !strings.Contains(stderr.String(), "kbisect bisect resume") {
		t.Errorf("no resume hint: %q", stderr.String())
	}
	recs, err := bisect.ReadJournal(job)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; last.Type != bisect.RecInterrupt {
		t.Errorf("journal ends with %q, want interrupt", last.Type)
	}
}

// TestCLISim runs kbisect sim --json and checks its rows.
func TestCLISim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	r := runCLI(t, bin, "sim", "--commits", "128", "--trials", "20", "--p", "0.9,0.5", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 12 {
		t.Fatalf("%d rows, want 6 strategies x 2 p: %s", len(lines), r.stdout)
	}
	defaults := 0
	for _, l := range lines {
		var row map[string]any
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		for _, k := range []string{"strategy", "p", "success", "mean_runs", "p90_runs", "builds", "cost"} {
			if _, ok := row[k]; !ok {
				t.Errorf("row lacks %q: %s", k, l)
			}
		}
		if row["default"] == true {
			defaults++
			if row["strategy"] != "bayes" {
				t.Errorf("default row is %v", row["strategy"])
			}
		}
	}
	if defaults != 2 {
		t.Errorf("%d default rows, want 2", defaults)
	}
	if r := runCLI(t, bin, "sim", "--commits", "64", "--trials", "5", "--parallel", "1,3"); r.code != 0 || !strings.Contains(r.stdout, "speed-up") {
		t.Errorf("--parallel table: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, bin, "sim", "--p", "2"); r.code != 2 || !strings.Contains(r.stderr, "(0, 1]") {
		t.Errorf("--p 2: %d %q", r.code, r.stderr)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestCLIBadInput checks that wrong input gets a clear one-line error.
func TestCLIBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 10, 5)
	gitT(t, repoDir, "branch", "side", hashes[3])
	gitT(t, repoDir, "checkout", "-q", "side")
	os.WriteFile(filepath.Join(repoDir, "s"), []byte("s\n"), 0o644)
	gitT(t, repoDir, "add", "s")
	gitT(t, repoDir, "commit", "-q", "-m", "side")
	gitT(t, repoDir, "checkout", "-q", "main")
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec.sh")
	os.WriteFile(noexec, []byte("exit 0\n"), 0o644)
	ok := testenv.WriteScript(t, dir, "ok.sh", "test ! -f bug")
	job := filepath.Join(t.TempDir(), "job")
	if r := runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", ok, "--job", job); r.code != 0 {
		t.Fatalf("first bisection: %d %s", r.code, r.stderr)
	}
	base := []string{"bisect", "--repo", repoDir}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown good", []string{"--good", "nope", "--bad", "main", "--exec", ok}, `unknown revision "nope"`},
		{"unknown bad", []string{"--good", hashes[0], "--bad", "v9.9", "--exec", ok}, `unknown revision "v9.9"`},
		{"good == bad", []string{"--good", "main", "--bad", hashes[9], "--exec", ok}, "are the same commit"},
		{"swapped", []string{"--good", "main", "--bad", hashes[0], "--exec", ok}, "are they swapped"},
		{"not an ancestor", []string{"--good", "side", "--bad", "main", "--exec", ok}, "is not an ancestor of --bad"},
		{"not executable", []string{"--good", hashes[0], "--bad", "main", "--exec", noexec}, "is not executable"},
		{"missing exec", []string{"--good", hashes[0], "--bad", "main", "--exec", "./missing.sh"}, "does not exist"},
		{"other bisection's job", []string{"--good", hashes[2], "--bad", "main", "--exec", ok, "--job", job}, "belongs to another bisection"},
		{"same bisection's job", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--job", job}, "kbisect bisect resume"},
		{"not a repo", []string{"--repo", dir, "--good", "a", "--bad", "b", "--exec", ok}, "is not a git repository"},
		{"bad budget", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--budget", "soon"}, "--budget"},
		{"bad strategy", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--strategy", "magic"}, "unknown strategy"},
		{"simulator's strategy", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--strategy", "oracle-stop"}, "--strategy oracle-stop: the simulator's strategy is told the failure rate"},
		{"bad confidence", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--confidence", "1.5"}, "--confidence"},
		{"zero confidence", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--confidence", "0"}, "--confidence 0: give a probability"},
		{"zero parallel", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--parallel", "0"}, "--parallel 0: give 1 to 64"},
		{"too parallel", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--parallel", "65"}, "--parallel 65: give 1 to 64"},
		{"bad signature", []string{"--good", hashes[0], "--bad", "main", "--exec", ok, "--signature", "wire ("}, `--signature "wire (": not a regular expression`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, bin, append(base, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
	if r := runCLI(t, bin, "bisect", "status", t.TempDir()); r.code != 2 || !strings.Contains(r.stderr, "not a kbisect job directory") {
		t.Errorf("status of an empty dir: %d %q", r.code, r.stderr)
	}
}

// TestGitBisectRunBadFlag: `git bisect run kbisect test` with a mistyped
// flag stops git's bisection (exit 128) instead of marking every commit
// bad, and git names no first bad commit.
func TestGitBisectRunBadFlag(t *testing.T) {
	bin := buildCLI(t)
	dir, hashes := makeRepo(t, 8, 5)
	gitT(t, dir, "bisect", "start", hashes[7], hashes[0])
	for _, args := range [][]string{{"test", "--confg", "tinyconfig"}, {"test", "extra-argument"}} {
		cmd := exec.Command("git", append([]string{"-C", dir, "bisect", "run", bin}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("git bisect run %v succeeded:\n%s", args, out)
		}
		if strings.Contains(string(out), "is the first bad commit") || !strings.Contains(string(out), "exit 128 stops git bisect run") {
			t.Errorf("git bisect run %v did not abort on the usage error:\n%s", args, out)
		}
		// Nothing was marked beyond the two ends git was started with.
		log := gitT(t, dir, "bisect", "log")
		if n := strings.Count(log, "\ngit bisect bad") + strings.Count(log, "\ngit bisect good"); n != 0 {
			t.Errorf("git bisect log after %v marks %d commits, want none:\n%s", args, n, log)
		}
	}
}

// TestCLIVersion: kbisect --version names the build.
func TestCLIVersion(t *testing.T) {
	r := runCLI(t, buildCLI(t), "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "kbisect version ") {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
}

// TestCLIJSONError: with --json, bad input is also one JSON object on
// stdout (the error and the exit status), beside the line on stderr.
func TestCLIJSONError(t *testing.T) {
	r := runCLI(t, buildCLI(t), "bisect", "--repo", t.TempDir(), "--good", "x", "--bad", "y", "--json")
	var obj struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil || r.code != 2 || obj.ExitCode != 2 || !strings.Contains(obj.Error, "not a git repository") {
		t.Errorf("exit %d, stdout %q (%v), stderr %q", r.code, r.stdout, err, r.stderr)
	}
	if !strings.Contains(r.stderr, "kbisect: ") {
		t.Errorf("stderr lacks the error line: %q", r.stderr)
	}
}

// TestCLIWritesOnlyItsCache: a command (--help too) writes nothing in the
// user's cache directory but kbisect's own, and the commands it runs see
// the XDG_CACHE_HOME it was given.
func TestCLIWritesOnlyItsCache(t *testing.T) {
	bin := buildCLI(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CACHE_HOME", "KBISECT_CACHE"}
	if r := runCLIEnv(t, env, bin, "--help"); r.code != 0 {
		t.Fatalf("--help: exit %d: %s", r.code, r.stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(home, ".cache"))
	for _, e := range ents {
		if e.Name() != "kbisect" {
			t.Errorf("kbisect --help wrote ~/.cache/%s", e.Name())
		}
	}
	// An --exec test sees the environment as given: no XDG_CACHE_HOME.
	dir, hashes := makeRepo(t, 4, 3)
	r := runCLIEnv(t, env, bin, "bisect", "--repo", dir, "--good", hashes[0], "--bad", hashes[3],
		"--exec", `test -z "${XDG_CACHE_HOME+set}" || { echo "XDG_CACHE_HOME=$XDG_CACHE_HOME"; exit 1; }`, "--budget", "2", "--job", t.TempDir(), "--json")
	if r.code != 3 {
		t.Errorf("exit %d, want 3 (no regression: the test always passes): %s %s", r.code, r.stdout, r.stderr)
	}
}
