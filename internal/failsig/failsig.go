// Package failsig names failures: a short text that stays the same from
// one failure of a bug to the next and differs between bugs, so that a
// bisection can tell the bug it bisects from another one that fails the
// same test (another oops, a corruption on the other side of the wire).
// Numbers that change from run to run (timestamps, addresses, PIDs, CPUs,
// line numbers) are replaced by "N".
package failsig

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// Marker starts the line by which a test command (`kbisect bisect --exec`)
// names its failure: the rest of the line is the signature.
const Marker = "KBISECT-SIGNATURE:"

// OopsMarkers are the console lines that show a kernel hit a bug.
var OopsMarkers = []string{"Oops:", "BUG:", "WARNING:", "general protection fault", "Kernel panic", "kernel BUG at", "Call Trace:"}

// MaxLen bounds a signature's length.
const MaxLen = 160

var (
	timestamp = regexp.MustCompile(`^\s*(<\d+>)?\[\s*\d+\.\d+\]\s*`)
	variable  = regexp.MustCompile(`0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\b\d+\b`)
	spaces    = regexp.MustCompile(`\s+`)
)

// Clean trims s to one line of single spaces, at most MaxLen bytes.
func Clean(s string) string {
	s = strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	if len(s) > MaxLen {
		s = s[:MaxLen]
	}
	return s
}

// IsOops reports whether a console line shows a kernel bug.
func IsOops(line string) bool {
	for _, m := range OopsMarkers {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// Oops is the signature of a kernel oops, WARN or panic from its first
// line: the console timestamp dropped and every number made "N", so that
// "WARNING: CPU: 1 PID: 345 at net/ipv4/esp4.c:123 esp_input+0x12/0x40"
// is "oops: WARNING: CPU: N PID: N at net/ipv4/esp4.c:N esp_input+N/N".
func Oops(line string) string {
	line = timestamp.ReplaceAllString(line, "")
	return "oops: " + Clean(variable.ReplaceAllString(line, "N"))
}

// FromOutput is the signature of a failed run from its output: the rest of
// the first line with Marker, else the first kernel oops line (see Oops),
// else "".
func FromOutput(out []byte) string {
	oops := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, Marker); i >= 0 {
			return Clean(line[i+len(Marker):])
		}
		if oops == "" && IsOops(line) {
			oops = Oops(line)
		}
	}
	return oops
}
