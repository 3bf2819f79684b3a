package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultNice is the nice value of the QEMU processes kbisect starts, when
// the host lets it lower one (root or CAP_SYS_NICE); KBISECT_VM_NICE
// overrides it (0 leaves QEMU at the caller's priority).
//
// Why: a nested Xen host is three or more vCPU threads that all have to run
// for one packet to cross from a domU through dom0's netback to the other
// domU. Given one share among the others (a `make -j2` started from another
// terminal is a scheduler autogroup of its own, weighing as much as all of
// kbisect), the host runs them one or two at a time and the pipeline
// stalls for tens to hundreds of milliseconds. Beside a `make -j2` kernel
// build, one netfront stream of a 6.1 pair through the NAT moved 1.0 Mbit/s
// at nice 0 and 19.2 at -10, a QEMU pair 27.1 and 51.5 (`make
// bench-throughput` with KBISECT_BENCH_BESIDE=build); at -5, two `kbisect
// run`s moved 4.9 and 16.7 through netfront. The test's power is its
// traffic, so while a test runs its VMs come first; kbisect's own builds
// run at nice 10.
const DefaultNice = -10

// niceEnv names the environment variable that overrides DefaultNice.
const niceEnv = "KBISECT_VM_NICE"

// vmNice is the nice value asked for: DefaultNice or KBISECT_VM_NICE.
func vmNice() (int, error) {
	s, ok := os.LookupEnv(niceEnv)
	if !ok || strings.TrimSpace(s) == "" {
		return DefaultNice, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < -20 || n > 0 {
		return 0, fmt.Errorf("%s=%q: give a nice value from -20 to 0 (0 leaves QEMU at kbisect's priority)", niceEnv, s)
	}
	return n, nil
}

// startPrioritized starts cmd (a QEMU) at nice vmNice: as a session of its
// own, so that it is a scheduler autogroup of its own whose nice it sets
// (where the kernel groups by session, nice between processes of different
// sessions means nothing), and with every thread at that nice (where it does
// not). cmd.SysProcAttr must not ask for Setpgid: the new session is a new
// process group too, whose id is the pid. When the host refuses the nice
// (no CAP_SYS_NICE), cmd still starts, and logf says so once per process.
func startPrioritized(cmd *exec.Cmd, logf func(string, ...any)) error {
	nice, err := vmNice()
	if err != nil {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if nice == 0 {
		return cmd.Start()
	}
	// Threads inherit the nice of the thread that forks them, and nice is
	// per thread on Linux: set it on this one only while forking.
	runtime.LockOSThread()
	prio, gerr := unix.Getpriority(unix.PRIO_PROCESS, 0) // the raw call returns 20 - nice
	set := gerr == nil && unix.Setpriority(unix.PRIO_PROCESS, 0, nice) == nil
	err = cmd.Start()
	if set {
		// Raising a nice value back is always allowed. (Were it refused,
		// this runtime thread would only keep the VM's priority; ending
		// the thread instead would kill QEMU by its Pdeathsig.)
		_ = unix.Setpriority(unix.PRIO_PROCESS, 0, 20-prio)
	}
	runtime.UnlockOSThread()
	if err != nil {
		return err
	}
	aerr := setAutogroupNice(cmd.Process.Pid, nice)
	if !set || aerr != nil {
		warnNiceOnce.Do(func() {
			why := "setpriority refused"
			if aerr != nil {
				why = aerr.Error()
			}
			logf("vm: QEMU runs at kbisect's own priority, not nice %d (%s): beside other work its guests get less CPU and test less traffic; run as root or with CAP_SYS_NICE, or set %s=0 to silence this", nice, why, niceEnv)
		})
	}
	return nil
}

var warnNiceOnce sync.Once

// setAutogroupNice sets the nice of pid's scheduler autogroup (sched(7)).
// Where the kernel has no autogroups, or does not use them, there is
// nothing to set and the per-thread nice is what counts.
func setAutogroupNice(pid, nice int) error {
	on, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled")
	if err != nil || strings.TrimSpace(string(on)) != "1" {
		return nil
	}
	path := fmt.Sprintf("/proc/%d/autogroup", pid)
	if err := os.WriteFile(path, []byte(strconv.Itoa(nice)), 0); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // the process has already ended
		}
		return fmt.Errorf("autogroup nice: %w", err)
	}
	return nil
}
