// Package procgroup runs a command in a process group of its own that
// does not outlive kbisect, and finds processes still working in a
// directory.
//
// A keeper process joins the group first and waits on a pipe whose write
// end only kbisect holds. When kbisect exits, however it exits (kill -9
// too), the keeper reads end-of-file and ends the group: SIGTERM to every
// process in it (make deletes its half-written targets, a test cleans up),
// SIGKILL Grace later. When the command ends normally, what it left
// running in its group is killed at once, so nothing of one run goes on
// into the next one's checkout. A process that leaves the group (setsid,
// a daemon) escapes both: Busy finds it by its working directory.
package procgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Grace is the time the processes of a group get between the SIGTERM and
// the SIGKILL of its keeper, when kbisect died.
const Grace = 5 * time.Second

// Linger is how long the processes of a group may live on after the
// kbisect that ran it died: what works in a directory longer left the
// group.
const Linger = Grace + time.Second

// keeperScript ignores the signals it sends (and a terminal's), waits for
// end-of-file on its standard input and ends its group.
var keeperScript = fmt.Sprintf("trap '' TERM INT HUP QUIT; read x; kill -TERM 0; sleep %d; kill -KILL 0", int(Grace/time.Second))

// group is a process group held by a keeper.
type group struct {
	keeper *exec.Cmd
	w      *os.File // the keeper's standard input; closed when we exit
	pgid   int
}

func newGroup() (*group, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("process group: %w", err)
	}
	k := exec.Command("/bin/sh", "-c", keeperScript)
	k.Stdin = r
	k.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = k.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("process group: start its keeper: %w", err)
	}
	return &group{keeper: k, w: w, pgid: k.Process.Pid}, nil
}

// signal sends sig to every process of the group.
func (g *group) signal(sig syscall.Signal) error {
	err := syscall.Kill(-g.pgid, sig)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}

// end kills what is left of the group, keeper included, and reaps the
// keeper.
func (g *group) end() {
	g.signal(syscall.SIGKILL)
	g.w.Close()
	g.keeper.Wait()
}

// Run runs cmd (not yet started) as cmd.Run does, in a new process group
// that dies with kbisect. When cmd's context is done, stop is sent to the
// whole group (SIGKILL follows after cmd.WaitDelay, as exec does for the
// command alone); when cmd ends, whatever is left of its group is killed.
// cmd.SysProcAttr's process group fields, and cmd.Cancel of a command made
// with exec.CommandContext, are set here.
func Run(cmd *exec.Cmd, stop syscall.Signal) error {
	g, err := newGroup()
	if err != nil {
		return err
	}
	defer g.end()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pgid = true, g.pgid
	if cmd.Cancel != nil { // made by exec.CommandContext
		cmd.Cancel = func() error { return g.signal(stop) }
	}
	return cmd.Run()
}

// Busy returns the processes whose working directory is dir or under it
// (of those this process may look at): what still works in a checkout.
func Busy(dir string) []int {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// WaitIdle waits up to d (or until ctx is done) for no process to work in
// dir (see Busy) and returns those still there.
func WaitIdle(ctx context.Context, dir string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		pids := Busy(dir)
		if len(pids) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return pids
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
