package kernel

import (
	"fmt"
	"math/bits"

	"github.com/kbisect/kbisect/internal/failsig"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
)

// FailSignature names the failure of a failed run (bisect.Outcome.FailSig)
// from what it showed, in the order the run's verdict weighs it: for a
// corruption, the test, the wire verdict (encap: the sender's output path;
// decap: the receiver's input path; nat: the NAT) and the corruption's
// shape; a SIMD canary; ESP packets that failed authentication with no
// corrupted byte (another signature than a payload corruption); else the
// first oops, WARN or panic on a guest's console. Numbers that change from
// run to run (offsets, addresses, counts) are left out: two failures of
// one bug name it alike.
func FailSignature(r *testcases.Report) string {
	if r == nil || r.Verdict != testcases.Fail {
		return ""
	}
	test := r.Test
	if test == "" {
		test = "test"
	}
	if len(r.Corruptions) > 0 {
		wire := r.Wire.Verdict
		if wire == "" {
			wire = "unknown"
		}
		return fmt.Sprintf("%s: corruption, wire %s, %s", test, wire, Shape(r.Corruptions[0]))
	}
	for _, g := range r.Guests {
		if c := g.SIMDCanary; c != nil && c.Clobbered > 0 {
			return fmt.Sprintf("%s: SIMD state lost on the %s", test, g.Role)
		}
	}
	for _, g := range r.Guests {
		if g.AuthFailures > 0 {
			return fmt.Sprintf("%s: ESP authentication failures at the %s", test, g.Role)
		}
	}
	for _, g := range r.Guests {
		if len(g.Oopses) > 0 {
			return failsig.Oops(g.Oopses[0])
		}
	}
	return test + ": fail"
}

// Shape is a corruption's shape: its length (1 byte, 2-16 bytes, more)
// and what became of the bytes (one bit flipped, zeroed, changed).
func Shape(c proto.Corruption) string {
	size := "1 byte"
	switch {
	case c.Length > 16:
		size = "more than 16 bytes"
	case c.Length > 1:
		size = "2-16 bytes"
	}
	flipped, zero := 0, len(c.Seen) > 0
	for i := range min(len(c.Expected), len(c.Seen)) {
		flipped += bits.OnesCount8(c.Expected[i] ^ c.Seen[i])
	}
	for _, b := range c.Seen {
		zero = zero && b == 0
	}
	switch {
	case flipped == 1 && len(c.Expected) == len(c.Seen):
		return size + ", one bit flipped"
	case zero:
		return size + ", zeroed"
	}
	return size + ", changed"
}
