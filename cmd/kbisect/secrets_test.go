package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// toyRepo makes a git repository of n commits that is not a kernel tree.
func toyRepo(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	os.MkdirAll(dir, 0o755)
	git("init", "-q", "-b", "main")
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(dir, "n"), []byte{byte('a' + i), '\n'}, 0o644)
		git("add", "n")
		git("commit", "-q", "-m", "c")
	}
	return dir
}

// TestLAVATokenNotStored bisects under LAVA against a local HTTP server
// standing in for one, with the token given as a flag: the token reaches
// the server but no file of the job directory, no report and no status;
// resume takes it again as a flag or from the environment.
func TestLAVATokenNotStored(t *testing.T) {
	const token = "tok-3f9a1c77e2"
	var mu sync.Mutex
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := "AnonymousUser"
		if r.Header.Get("Authorization") == "Token "+token {
			mu.Lock()
			seen++
			mu.Unlock()
			user = "kbisect"
		}
		switch r.URL.Path {
		case "/api/v0.2/system/version/":
			json.NewEncoder(w).Encode(map[string]string{"version": "2023.01"})
		case "/api/v0.2/system/whoami/":
			json.NewEncoder(w).Encode(map[string]string{"user": user})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	bin := buildCLI(t)
	repo := toyRepo(t, 4)
	job := filepath.Join(t.TempDir(), "job")
	cache := t.TempDir()
	run := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), append([]string{"KBISECT_CACHE=" + cache, "KBISECT_LAVA_URL=", "KBISECT_LAVA_TOKEN="}, env...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	// Not a kernel tree: every build is an infrastructure error, and the
	// bisection stops (exit 5) after its retries, resumable.
	out, code := run(nil, "bisect", "--repo", repo, "--good", "main~3", "--bad", "main", "--job", job,
		"--executor", "lava", "--lava-url", srv.URL, "--lava-token", token, "--retries", "1")
	if code != 5 || seen == 0 {
		t.Fatalf("bisect: exit %d, %d authenticated requests; want 5 after using the token:\n%s", code, seen, out)
	}
	check := func(what, text string) {
		t.Helper()
		if strings.Contains(text, token) {
			t.Errorf("the token is in %s", what)
		}
	}
	check("the output", out)
	st, _ := run(nil, "bisect", "status", job)
	check("bisect status", st)
	if !strings.Contains(st, "--executor=lava") {
		t.Errorf("status lacks the test flags: %s", st)
	}
	rep, code := run(nil, "bisect", "report", job)
	if code != 0 {
		t.Fatalf("report: %d %s", code, rep)
	}
	filepath.Walk(job, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			check(p, string(b))
		}
		return nil
	})

	// Resume: the token is not in the job, so it must be given again.
	out, code = run(nil, "bisect", "resume", job)
	if code != 2 || !strings.Contains(out, "KBISECT_LAVA_TOKEN") {
		t.Errorf("resume without a token: exit %d, %q; want 2 and how to give it", code, out)
	}
	before := seen
	out, code = run(nil, "bisect", "resume", job, "--lava-token", token)
	if code != 5 || seen == before {
		t.Errorf("resume --lava-token: exit %d, token used %d times; %s", code, seen-before, out)
	}
	before = seen
	out, code = run([]string{"KBISECT_LAVA_TOKEN=" + token}, "bisect", "resume", job)
	if code != 5 || seen == before {
		t.Errorf("resume with $KBISECT_LAVA_TOKEN: exit %d, token used %d times; %s", code, seen-before, out)
	}
	filepath.Walk(job, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			check(p+" after resume", string(b))
		}
		return nil
	})
}
