package agent

import (
	"context"
	"testing"
	"time"
)

// TestSIMDCanary runs the canary on this host, whose kernel keeps every
// thread's SIMD state: it must check and find nothing changed.
func TestSIMDCanary(t *testing.T) {
	if !canaryAvailable {
		t.Skip("the SIMD canary is amd64 only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := simdCanary(ctx, 1)
	if res.Checks == 0 || res.Seconds <= 0 {
		t.Fatalf("the canary did not run: %+v", res)
	}
	if res.Clobbered != 0 {
		t.Errorf("registers changed on a sound host: %+v", res)
	}
}

// TestSIMDHoldDetects makes the check fail on purpose: a pattern the
// registers cannot match after the loads (the loop reloads from pat, so a
// register compared with a changed pattern must be reported).
func TestSIMDHoldDetects(t *testing.T) {
	if !canaryAvailable {
		t.Skip("the SIMD canary is amd64 only")
	}
	var pat [15][16]byte
	for i := range pat {
		for j := range pat[i] {
			pat[i][j] = byte(i*16 + j)
		}
	}
	var got [16]byte
	if bad := simdHold(&pat, 3, &got); bad != 0 {
		t.Fatalf("a sound host: register %d changed to %x", bad-1, got)
	}
	// Zero rounds checks nothing.
	if bad := simdHold(&pat, 0, &got); bad != 0 {
		t.Fatalf("zero rounds reported register %d", bad-1)
	}
}
