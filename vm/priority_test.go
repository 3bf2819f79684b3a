package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"
	"golang.org/x/sys/unix"
)

// threadNices reads the nice value of every thread of pid (field 19 of
// /proc/PID/task/TID/stat).
func threadNices(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var nices []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// The command name, in parentheses, may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		n, err := strconv.Atoi(f[16]) // field 19, counted from field 3
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		nices = append(nices, n)
	}
	return nices
}

// autogroupOf reads pid's autogroup and its nice; ok is false where the
// kernel has no autogroups, and where pid is in the root task group, which
// the kernel prints as nothing: processes no one started a session for since
// boot (PID 1 and what it runs without setsid, as a CI runner may).
func autogroupOf(t *testing.T, pid int) (group string, nice int, ok bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/autogroup", pid))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b)) // "/autogroup-11 nice -5"
	if len(f) != 3 || f[1] != "nice" {
		t.Fatalf("/proc/%d/autogroup: %q", pid, b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("/proc/%d/autogroup: %q", pid, b)
	}
	return f[0], n, true
}

func TestStartPrioritized(t *testing.T) {
	testenv.NeedRoot(t)
	autogroups := false
	if b, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err == nil && strings.TrimSpace(string(b)) == "1" {
		autogroups = true
	}
	ownGroup, _, _ := autogroupOf(t, os.Getpid()) // "" in the root group
	own := threadNices(t, os.Getpid())[0]
	for _, tc := range []struct {
		env      string // KBISECT_VM_NICE; "-" unset
		wantNice int
		wantErr  string
	}{
		{"-", DefaultNice, ""},
		{"-12", -12, ""},
		{"0", 0, ""},
		{"5", 0, "KBISECT_VM_NICE=\"5\": give a nice value from -20 to 0"},
		{"fast", 0, "KBISECT_VM_NICE=\"fast\": give a nice value"},
	} {
		t.Run("env="+tc.env, func(t *testing.T) {
			if tc.env == "-" {
				t.Setenv(niceEnv, "") // unset
			} else {
				t.Setenv(niceEnv, tc.env)
			}
			cmd := exec.Command("sleep", "30")
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			var logged []string
			err := startPrioritized(cmd, func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if cmd.Process != nil {
					t.Fatalf("started %d despite the bad setting", cmd.Process.Pid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if len(logged) > 0 {
				t.Errorf("root was refused the nice: %q", logged)
			}
			if sid, _ := unix.Getsid(pid); sid != pid {
				t.Errorf("session of %d = %d, want a session of its own", pid, sid)
			}
			for _, n := range threadNices(t, pid) {
				if n != tc.wantNice {
					t.Errorf("child thread nice %d, want %d", n, tc.wantNice)
				}
			}
			if autogroups {
				group, n, ok := autogroupOf(t, pid)
				if !ok {
					t.Fatal("autogroups are on, but the child has none")
				}
				if group == ownGroup {
					t.Errorf("child in the caller's autogroup %s", group)
				}
				if n != tc.wantNice {
					t.Errorf("child autogroup nice %d, want %d", n, tc.wantNice)
				}
			}
			// The thread that forked keeps no raised priority.
			for _, n := range threadNices(t, os.Getpid()) {
				if n < own {
					t.Errorf("a thread of the test process is left at nice %d (it ran at %d)", n, own)
				}
			}
		})
	}
}
