package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// setupSystem mounts what the agent needs and creates the device nodes a
// kernel without devtmpfs lacks.
func setupSystem() {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		unix.Mount(m.src, m.dir, m.fstype, 0, "")
	}
	// Kernels without devtmpfs (or with the initramfs's own /dev) may lack
	// these; mknod fails harmlessly where they exist.
	for _, n := range []struct {
		path         string
		major, minor uint32
	}{
		{"/dev/console", 5, 1}, {"/dev/null", 1, 3}, {"/dev/zero", 1, 5},
		{"/dev/urandom", 1, 9}, {"/dev/random", 1, 8},
		{"/dev/ttyS0", 4, 64}, {"/dev/ttyS1", 4, 65}, {"/dev/hvc0", 229, 0}, {"/dev/hvc1", 229, 1},
	} {
		unix.Mknod(n.path, unix.S_IFCHR|0o600, int(unix.Mkdev(n.major, n.minor)))
	}
	os.Setenv("PATH", "/bbin:/bin:/usr/bin:/sbin:/usr/sbin")
}

// loadModules loads kernel modules in the order given (dependencies first).
// finit_module needs Linux 3.8; older kernels get init_module.
func loadModules(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := loadModule(p); err != nil {
			errs = append(errs, fmt.Errorf("load module %s: %w", filepath.Base(p), err))
		}
	}
	return errors.Join(errs...)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		var img []byte
		img, err = os.ReadFile(path)
		if err != nil {
			return err
		}
		err = unix.InitModule(img, "")
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// uptime returns the guest's uptime in seconds, or -1.
func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// powerOff syncs and restarts the machine: kbisect starts QEMU with
// -no-reboot, so a restart ends it on every kernel, with or without ACPI.
func powerOff() {
	unix.Sync()
	if os.Getpid() != 1 {
		os.Exit(0)
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}
