package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// newNetns creates a network namespace and returns an fd referring to it.
// Nothing names the namespace: it lives as long as the returned fd or any
// socket, tap or thread in it.
func newNetns() (int, error) {
	fd := -1
	err := onNetnsThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
		var err error
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (the nat topology needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN)", err)
		}
		return -1, fmt.Errorf("netlab: create network namespace: %w", err)
	}
	return fd, nil
}

// inNetns runs fn on an OS thread that has joined the namespace nsFd.
// Sockets, taps and child processes fn creates belong to that namespace,
// and so do the /proc/sys/net files it opens.
func inNetns(nsFd int, fn func() error) error {
	return onNetnsThread(func() error {
		if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netlab: join network namespace: %w", err)
		}
		return nil
	}, fn)
}

// onNetnsThread runs enter then, if it succeeded, fn, on a locked OS thread,
// and puts the thread back into its original namespace afterwards. If that
// fails the thread stays locked, so the runtime terminates it when the
// goroutine ends instead of scheduling other goroutines in the wrong
// namespace. (Letting every such thread die is not enough: a goroutine
// locked to the main thread wedges it forever rather than ending it, and it
// would keep the namespace alive.) Threads the runtime starts meanwhile
// come from its template thread, never from this one.
func onNetnsThread(enter, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("netlab: open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := enter(); err != nil {
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			ch <- err
			return
		}
		err = fn()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// writeSysctl writes value to /proc/sys/<key>, in the caller's thread's
// network namespace for net/ keys. Call it from inNetns.
func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("netlab: sysctl %s=%s: %w", key, value, err)
	}
	return nil
}
