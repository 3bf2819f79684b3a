package exectest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/testenv"
)

// The tests of issue #17: faults and bad input never give a wrong verdict,
// leak the environment, or run forever. They run the kbisect binary on
// real repositories, with real processes and signals.

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// runCLIWithin is runCLI that kills kbisect after d (a failure).
func runCLIWithin(t *testing.T, d time.Duration, bin string, args ...string) cliResult {
	t.Helper()
	return runCLIEnvWithin(t, d, nil, bin, args...)
}

// runCLIEnv is runCLI with env changed: "K=V" sets K, "K" unsets it.
func runCLIEnv(t *testing.T, env []string, bin string, args ...string) cliResult {
	t.Helper()
	return runCLIEnvWithin(t, 10*time.Minute, env, bin, args...)
}

func runCLIEnvWithin(t *testing.T, d time.Duration, env []string, bin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		drop := map[string]bool{}
		for _, kv := range env {
			k, _, _ := strings.Cut(kv, "=")
			drop[k] = true
		}
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); !drop[k] {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		for _, kv := range env {
			if strings.Contains(kv, "=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Errorf("kbisect %s: still running after %s", strings.Join(args, " "), d)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{o.String(), e.String(), code}
}

// TestCLICannotRun: a test that cannot run is an infrastructure error,
// never a verdict: a script given to sh that does not exist is refused
// before anything runs, and a command that is not found (exit 127) stops
// the bisection with exit 5, not "no regression".
func TestCLICannotRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 10, 5)
	job := filepath.Join(t.TempDir(), "job")
	r := runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", "sh /no/such/file.sh", "--job", job)
	if r.code != 2 || !strings.Contains(r.stderr, "/no/such/file.sh does not exist") {
		t.Errorf("sh /no/such/file.sh: exit %d, %q; want 2", r.code, r.stderr)
	}
	if _, err := os.Stat(job); err == nil {
		t.Errorf("a refused command left a job directory")
	}
	r = runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", "no-such-program-kbisect --run", "--job", job, "--retries", "1")
	if r.code != 5 || !strings.Contains(r.stdout, "exited 127") || !strings.Contains(r.stdout+r.stderr, "not found") {
		t.Errorf("a command that is not found: exit %d\n%s\n%s\nwant 5 (infrastructure errors) naming exit 127", r.code, r.stdout, r.stderr)
	}
	if runs := journalRuns(t, job); len(runs) != 0 {
		t.Errorf("%d verdicts recorded for a command that cannot run", len(runs))
	}
}

// TestCLIGitEnv: kbisect run from a git hook or alias (GIT_DIR,
// GIT_WORK_TREE, GIT_INDEX_FILE pointing at another repository) tests the
// commits of --repo, and the other repository is left as it was.
func TestCLIGitEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 20, 13)
	other, _ := makeRepo(t, 3, 2)
	otherIndex, _ := os.ReadFile(filepath.Join(other, ".git", "index"))
	before := snapshot(t, other)
	cmd := exec.Command(bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--json",
		"--job", filepath.Join(t.TempDir(), "job"),
		// The test checks it sees the commit under test, and refreshes
		// the index of whatever repository it sees.
		"--exec", `git status >/dev/null; git update-index --refresh >/dev/null; test "$(git rev-parse HEAD)" = "$KBISECT_COMMIT" || exit 200; test ! -f bug`)
	cmd.Env = append(os.Environ(), "GIT_DIR="+filepath.Join(other, ".git"), "GIT_WORK_TREE="+other,
		"GIT_INDEX_FILE="+filepath.Join(other, ".git", "index"), "GIT_PREFIX=sub/")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	var res bisect.Result
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &res); err != nil || res.Culprit != hashes[12] || res.InfraErrors != 0 {
		t.Errorf("result %+v (%v), want %s without errors", res, err, hashes[12])
	}
	if after, _ := os.ReadFile(filepath.Join(other, ".git", "index")); !bytes.Equal(after, otherIndex) {
		t.Errorf("the other repository's index was rewritten")
	}
	if after := snapshot(t, other); after != before {
		t.Errorf("the other repository changed:\n%+v\n%+v", before, after)
	}
}

// TestCLIHungTest: a test that never ends, without --timeout, is killed at
// the run's default limit (here the endpoint's test time, --budget 2s) as
// an infrastructure error; nothing of it is left running.
func TestCLIHungTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 10, 5)
	job := filepath.Join(t.TempDir(), "job")
	script := testenv.WriteScript(t, t.TempDir(), "hang.sh", `sleep 100000 & echo $! $$ >> "$KBISECT_JOB/pids"; wait`)
	r := runCLIWithin(t, 2*time.Minute, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", script,
		"--job", job, "--budget", "2s", "--retries", "1")
	if r.code != 5 || !strings.Contains(r.stdout, "timed out after 2s") {
		t.Errorf("exit %d\n%s\n%s\nwant 5 with runs timed out after 2s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(filepath.Join(job, "pids"))
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		if !testenv.WaitGone(pid, 2*time.Second) {
			t.Errorf("the test's sleep %d still runs", pid)
		}
	}
}

// TestCLIKillSurvivors: after kill -9 of kbisect, the test it started dies
// with its whole process group; a process that left the group survives,
// and the resumed job does not use the checkout it works in.
func TestCLIKillSurvivors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	testenv.NeedCommand(t, "setsid", "util-linux")
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 10, 5)
	job := filepath.Join(t.TempDir(), "job")
	script := testenv.WriteScript(t, t.TempDir(), "test.sh", `
echo "$KBISECT_RUN $(pwd)" >> "$KBISECT_JOB/pwds"
if [ ! -f "$KBISECT_JOB/behave" ]; then
	# The pid is written once the process has left the group (by setsid's
	# child itself): written by this shell, kbisect could be killed before
	# the child ran setsid, and the group's end would take it along.
	setsid sh -c 'echo $$ > "$KBISECT_JOB/escaped.tmp"; mv "$KBISECT_JOB/escaped.tmp" "$KBISECT_JOB/escaped"; exec sleep 1000' </dev/null >/dev/null 2>&1 &
	sleep 1000 & echo $! > "$KBISECT_JOB/child"
	echo $$ > "$KBISECT_JOB/leader"
	wait
fi
test ! -f bug`)
	args := []string{"bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", script, "--job", job, "--json"}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader := testenv.ReadPID(t, filepath.Join(job, "leader"), 30*time.Second)
	child := testenv.ReadPID(t, filepath.Join(job, "child"), 30*time.Second)
	escaped := testenv.ReadPID(t, filepath.Join(job, "escaped"), 30*time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	for name, pid := range map[string]int{"the test": leader, "its child": child} {
		if !testenv.WaitGone(pid, 3*time.Second) {
			t.Errorf("%s (%d) still runs 3s after kbisect was killed", name, pid)
		}
	}
	if !testenv.Alive(escaped) {
		t.Fatalf("the process that left the group died: the test cannot check the checkout")
	}
	b, _ := os.ReadFile(filepath.Join(job, "pwds"))
	first := strings.Fields(string(b))[1]

	os.WriteFile(filepath.Join(job, "behave"), nil, 0o644)
	r := runCLI(t, bin, "bisect", "resume", job, "--json")
	if r.code != 0 {
		t.Fatalf("resume: exit %d: %s", r.code, r.stderr)
	}
	var res bisect.Result
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &res); err != nil || res.Culprit != hashes[4] {
		t.Errorf("after resume: %+v, %v", res, err)
	}
	b, _ = os.ReadFile(filepath.Join(job, "pwds"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines[1:] {
		if strings.Fields(l)[1] == first {
			t.Errorf("a resumed run used %s, where a survivor still works", first)
			break
		}
	}
}

// TestCLIHangup: SIGHUP (a closed terminal or ssh session) stops a
// bisection as Ctrl-C does: resumable, exit 130.
func TestCLIHangup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 50, 20)
	job := filepath.Join(t.TempDir(), "job")
	// A test run under nohup (a CI job started so) would hand its ignored
	// SIGHUP down to kbisect, which then keeps it ignored as under nohup:
	// a handler of our own while kbisect starts makes its SIGHUP the
	// default, as in a terminal.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cmd := exec.Command(bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main",
		"--exec", flakyScript(t, 300, "0.3"), "--job", job)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(time.Minute, func() bool { return len(journalRuns(t, job)) >= 2 })
	cmd.Process.Signal(syscall.SIGHUP)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130; %s", err, stderr.String())
	}
	recs, err := bisect.ReadJournal(job)
	if err != nil || recs[len(recs)-1].Type != bisect.RecInterrupt {
		t.Errorf("journal does not end with an interrupt: %v", err)
	}
	if st := runCLI(t, bin, "bisect", "status", job); !strings.Contains(st.stdout, "status:   interrupted") {
		t.Errorf("status after SIGHUP: %q", st.stdout)
	}

	// Under nohup, SIGHUP is ignored, as the user asked.
	cmd = exec.Command("nohup", bin, "bisect", "resume", job)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := len(journalRuns(t, job))
	waitFor(time.Minute, func() bool { return len(journalRuns(t, job)) >= n+1 })
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	if !testenv.Alive(cmd.Process.Pid) {
		t.Errorf("under nohup, SIGHUP stopped the bisection")
	}
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("under nohup: exit %v after SIGINT, want 130", err)
	}
}

// TestCLIBadInputEarly: input that cannot be meant is a one-line error,
// exit 2, before anything is made: no job directory.
func TestCLIBadInputEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 10, 5)
	ok := testenv.WriteScript(t, t.TempDir(), "ok.sh", "test ! -f bug")
	base := []string{"bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"confidence nan", []string{"--exec", ok, "--confidence", "nan"}, "--confidence NaN"},
		{"confidence tiny", []string{"--exec", ok, "--confidence", "1e-300"}, "--confidence 1e-300"},
		{"negative timeout", []string{"--exec", ok, "--timeout", "-1s"}, "--timeout -1s"},
		{"negative max-time", []string{"--exec", ok, "--max-time", "-1m"}, "--max-time -1m0s"},
		{"negative max-runs", []string{"--exec", ok, "--max-runs", "-1"}, "--max-runs -1"},
		{"negative retries", []string{"--exec", ok, "--retries", "-1"}, "--retries -1"},
		{"negative build-cost", []string{"--exec", ok, "--build-cost", "-1"}, "--build-cost -1"},
		{"negative run-time", []string{"--exec", ok, "--run-time", "-1s"}, "--run-time -1s"},
		{"empty exec", []string{"--exec", ""}, "--exec is empty"},
		{"blank exec", []string{"--exec", "  "}, "--exec is empty"},
		{"missing config", []string{"--config", "/no/such/config"}, "--config"},
		{"missing script", []string{"--exec", "sh ./no-such.sh"}, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := filepath.Join(t.TempDir(), "job")
			r := runCLIWithin(t, 30*time.Second, bin, append(append(base, tc.args...), "--job", job)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line saying %q", r.code, r.stderr, tc.want)
			}
			if _, err := os.Stat(job); err == nil {
				t.Errorf("bad input left a job directory")
			}
		})
	}
	others := []struct {
		name string
		args []string
		want string
	}{
		{"validate confidence nan", []string{"validate", "--repo", repoDir, "--base", hashes[0], "--patches", hashes[0] + ".." + hashes[3],
			"--exec", ok, "--confidence", "nan"}, "--confidence NaN"},
		{"validate empty exec", []string{"validate", "--repo", repoDir, "--base", hashes[0], "--patches", hashes[0] + ".." + hashes[3],
			"--exec", ""}, "--exec is empty"},
		{"sim confidence 2", []string{"sim", "--confidence", "2"}, "--confidence 2"},
		{"sim budget -5", []string{"sim", "--budget", "-5"}, "--budget -5"},
		{"sim workers -1", []string{"sim", "--workers", "-1"}, "--workers -1"},
	}
	for _, tc := range others {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLIWithin(t, 10*time.Second, bin, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

// TestCLIValidShell: what git bisect run users write is run by sh, not
// refused.
func TestCLIValidShell(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 12, 7)
	for _, c := range []string{
		"mkdir -p d && cd d && test ! -f ../bug",
		"FOO=1 test ! -f bug",
		"if [ -f bug ]; then exit 1; fi",
		"for f in bug; do test ! -f $f || exit 1; done",
		"set -e; test ! -f bug",
		"export FOO=1; test ! -f bug",
		"trap 'rm -rf d' EXIT; test ! -f bug",
		": check; test ! -f bug",
		"{ test ! -f bug; }",
	} {
		t.Run(c, func(t *testing.T) {
			r := runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", c,
				"--job", filepath.Join(t.TempDir(), "job"), "--json")
			var res bisect.Result
			if err := json.Unmarshal([]byte(lastLine(r.stdout)), &res); r.code != 0 || err != nil || res.Culprit != hashes[6] {
				t.Errorf("exit %d, %q, %q; want the culprit %s", r.code, r.stdout, r.stderr, hashes[6])
			}
		})
	}
}

// TestCLIFullDisk: the disk fills up while kbisect writes its journal (a
// small tmpfs, filled by the test on its third run, the journal's last
// block too): infrastructure error, exit 5, no torn line; once there is
// space again the job resumes to the culprit.
func TestCLIFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kbisect binary")
	}
	mnt := testenv.MountTmpfs(t, "4m")
	bin := buildCLI(t)
	repoDir, hashes := makeRepo(t, 30, 17)
	job := filepath.Join(mnt, "job")
	// On the third run: pad the journal to 10 bytes short of a block, then
	// fill the disk, so that the next record is cut short.
	script := testenv.WriteScript(t, t.TempDir(), "fill.sh", `
n=$(cat "$KBISECT_JOB/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$KBISECT_JOB/n"
if [ $n -eq 3 ]; then
	j="$KBISECT_JOB/journal.jsonl"
	pad=$(( (4096 - $(stat -c %s "$j") % 4096 + 4096 - 10) % 4096 ))
	head -c $pad /dev/zero | tr '\0' '\n' >> "$j"
	dd if=/dev/zero of="$KBISECT_JOB/../fill" bs=4k 2>/dev/null
fi
test ! -f bug`)
	r := runCLI(t, bin, "bisect", "--repo", repoDir, "--good", hashes[0], "--bad", "main", "--exec", script, "--job", job)
	if r.code != 5 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "kbisect bisect resume") {
		t.Fatalf("exit %d, %q; want 5, the cause and how to resume", r.code, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(job, bisect.JournalName))
	if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("journal ends with a torn line: %q (%v)", b[max(0, len(b)-100):], err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var rec bisect.Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("journal line %d does not parse: %q", i+1, l)
		}
	}
	os.Remove(filepath.Join(mnt, "fill"))
	r = runCLI(t, bin, "bisect", "resume", job, "--json")
	var res bisect.Result
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &res); r.code != 0 || err != nil || res.Culprit != hashes[16] {
		t.Errorf("resume after freeing space: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}
