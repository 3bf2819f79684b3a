package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// execDirs hold the toolstack's programs and its dynamic loader: the
// initramfs layer that carries them stores every file with mode 0644.
var execDirs = []string{"/usr/lib/xen-4.17/bin", "/usr/bin", "/usr/sbin", "/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"}

// setupSystem mounts the file systems dom0 needs and makes the toolstack
// executable.
func setupSystem() {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/var/run", "tmpfs"},
		{"tmpfs", "/var/log", "tmpfs"},
		{"tmpfs", "/var/lib", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		unix.Mount(m.src, m.dir, m.fstype, 0, "")
	}
	os.MkdirAll("/dev/pts", 0o755)
	unix.Mount("devpts", "/dev/pts", "devpts", 0, "")
	os.Symlink("/proc/self/fd", "/dev/fd")
	for _, d := range execDirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	}
	os.Setenv("PATH", "/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	os.WriteFile("/proc/sys/kernel/printk", []byte("4"), 0o644)
}

// makeRaw turns off line editing and output post-processing on a terminal.
func makeRaw(f *os.File) {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return
	}
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.IXON
	unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}

// loadModules loads kernel modules in order; it returns what failed.
func loadModules(paths []string) []error {
	var errs []error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("load module %s: %w", filepath.Base(p), err))
		}
	}
	return errs
}
