// Command bootinit is a minimal /init for boot checks: it prints one line
// with the guest's uptime and reboots (QEMU exits with -no-reboot).
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	var ts syscall.Timespec
	const clockBoottime = 7
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	var uts syscall.Utsname
	syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	fmt.Fprintf(os.Stdout, "KBISECT-BOOT-OK release=%s uptime=%d.%03d\n", rel, ts.Sec, ts.Nsec/1e6)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	select {}
}
