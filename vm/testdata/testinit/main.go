// Command testinit is the /init of the vm package's test initramfs. It is
// built by the tests (go build ./testdata/testinit) and driven by the kernel
// command line variable kbtest=MODE:
//
//	hello  (default) report on ttyS1 and the console, then reboot
//	panic  report, then exit: the kernel panics ("Attempted to kill init")
//	hang   report, then sleep forever
//	ping   bring eth0 up, exchange raw Ethernet frames with the peer on the
//	       wire, report what arrived, then reboot
//
// Modules listed in /modules.order are loaded first, in order.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const prefix = "KBISECT-EVENT "

var channel *os.File

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	return strings.Fields(string(b) + " ?")[0]
}

// report writes an event line on the agent channel and the console.
func report(kind, msg string) {
	line := fmt.Sprintf("%s{\"type\":%q,\"uptime\":%s,\"message\":%q}\n", prefix, kind, uptime(), msg)
	if channel != nil {
		channel.Write([]byte(line))
	}
	fmt.Print("testinit: " + line)
}

func main() {
	os.MkdirAll("/proc", 0o755)
	os.MkdirAll("/sys", 0o755)
	os.MkdirAll("/dev", 0o755)
	syscall.Mount("proc", "/proc", "proc", 0, "")
	syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	if f, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		channel = f
	} else {
		fmt.Println("testinit: no agent channel:", err)
	}
	loadModules()
	mode := os.Getenv("kbtest")
	if mode == "" {
		mode = "hello"
	}
	fmt.Printf("testinit: cpu flags: %s\n", cpuFlags("aes", "pclmulqdq", "avx2", "rdrand"))
	switch mode {
	case "hello":
		report("ready", "hello")
	case "panic":
		report("ready", "about to exit")
		os.Exit(1)
	case "hang":
		report("ready", "hanging")
		for {
			time.Sleep(time.Hour)
		}
	case "ping":
		report("ready", "ping")
		ping()
	default:
		report("error", "unknown mode "+mode)
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}

func cpuFlags(want ...string) string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	var flags []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "flags") {
			flags = strings.Fields(l)
			break
		}
	}
	var have []string
	for _, w := range want {
		for _, f := range flags {
			if f == w {
				have = append(have, w)
				break
			}
		}
	}
	return strings.Join(have, " ")
}

func loadModules() {
	b, err := os.ReadFile("/modules.order")
	if err != nil {
		return
	}
	for _, m := range strings.Fields(string(b)) {
		f, err := os.Open(m)
		if err != nil {
			fmt.Println("testinit: module:", err)
			continue
		}
		_, _, e := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&[]byte{0}[0])), 0)
		f.Close()
		if e != 0 && e != syscall.EEXIST {
			fmt.Printf("testinit: load %s: %v\n", m, e)
		}
	}
}

const etherType = 0x88b5 // IEEE local experimental

const sysFinitModule = 313 // x86_64

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ping sends a frame every 100 ms on eth0 and reports the first frame from
// another MAC; it keeps sending 2 s more so the peer gets one too.
func ping() {
	var idx int
	for i := 0; i < 100; i++ {
		if b, err := os.ReadFile("/sys/class/net/eth0/ifindex"); err == nil {
			fmt.Sscan(string(b), &idx)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if idx == 0 {
		report("error", "no eth0")
		return
	}
	macStr, _ := os.ReadFile("/sys/class/net/eth0/address")
	var mac [6]byte
	fmt.Sscanf(strings.TrimSpace(string(macStr)), "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5])
	report("eth0", strings.TrimSpace(string(macStr)))
	if err := linkUp("eth0"); err != nil {
		report("error", "link up: "+err.Error())
		return
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(etherType)))
	if err != nil {
		report("error", "packet socket: "+err.Error())
		return
	}
	ll := &syscall.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: idx}
	if err := syscall.Bind(fd, ll); err != nil {
		report("error", "bind: "+err.Error())
		return
	}
	tv := syscall.Timeval{Usec: 100000}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:], mac[:])
	binary.BigEndian.PutUint16(frame[12:], etherType)
	payload := fmt.Sprintf("kbisect-frame from %x", mac)
	copy(frame[14:], payload)
	dst := &syscall.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: idx, Halen: 6}
	copy(dst.Addr[:], frame[:6])
	deadline := time.Now().Add(40 * time.Second)
	var gotAt time.Time
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if !gotAt.IsZero() && time.Since(gotAt) > 2*time.Second {
			return
		}
		syscall.Sendto(fd, frame, 0, dst)
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil || n < 14 || !gotAt.IsZero() || bytes.Equal(buf[6:12], mac[:]) {
			continue
		}
		gotAt = time.Now()
		report("frame", strings.TrimRight(string(buf[14:n]), "\x00"))
	}
	if gotAt.IsZero() {
		report("error", "no frame from the peer")
	}
}

func linkUp(name string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr [40]byte
	copy(ifr[:], name)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	flags := binary.LittleEndian.Uint16(ifr[16:]) | syscall.IFF_UP
	binary.LittleEndian.PutUint16(ifr[16:], flags)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	return nil
}
