package failsig

import (
	"strings"
	"testing"
)

func TestOops(t *testing.T) {
	tests := []struct{ line, want string }{
		{"[   12.345678] WARNING: CPU: 1 PID: 345 at net/ipv4/esp4.c:123 esp_input+0x12/0x40",
			"oops: WARNING: CPU: N PID: N at net/ipv4/esp4.c:N esp_input+N/N"},
		{"<4>[ 3.1] BUG: kernel NULL pointer dereference, address: 0000000000000008",
			"oops: BUG: kernel NULL pointer dereference, address: N"},
		{"Kernel panic - not syncing: Fatal exception in interrupt",
			"oops: Kernel panic - not syncing: Fatal exception in interrupt"},
	}
	for _, tc := range tests {
		if got := Oops(tc.line); got != tc.want {
			t.Errorf("Oops(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
	// Two failures of one bug on different runs name it alike.
	a := Oops("[ 1.0] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP")
	b := Oops("[ 77.2] general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP")
	if a != b {
		t.Errorf("%q != %q", a, b)
	}
}

func TestFromOutput(t *testing.T) {
	tests := []struct{ out, want string }{
		{"starting\nKBISECT-SIGNATURE:  checksum   mismatch\nKBISECT-SIGNATURE: later\n", "checksum mismatch"},
		{"x\n[ 2.0] BUG: unable to handle page fault for address: ffffc90000123000\nCall Trace:\n",
			"oops: BUG: unable to handle page fault for address: N"},
		{"[ 2.0] BUG: one\nthen KBISECT-SIGNATURE: mine\n", "mine"},
		{"just failed\n", ""},
		{"KBISECT-SIGNATURE: " + strings.Repeat("x", 300), strings.Repeat("x", MaxLen)},
	}
	for _, tc := range tests {
		if got := FromOutput([]byte(tc.out)); got != tc.want {
			t.Errorf("FromOutput(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}
