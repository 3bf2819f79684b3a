package vm

import (
	"fmt"
	"sync"
	"time"
)

var (
	tscOnce sync.Once
	tscKHz  uint64
)

// hostTSCKHz measures the host's TSC frequency, which is the guest's TSC
// frequency under TCG (QEMU's rdtsc returns host ticks). 0 if unknown.
func hostTSCKHz() uint64 {
	tscOnce.Do(func() {
		if !haveTSC {
			return
		}
		best := uint64(0)
		bestSpan := time.Duration(1 << 62)
		// Keep the window whose bracketing reads were closest together:
		// the least disturbed by preemption.
		for i := 0; i < 3; i++ {
			t0 := time.Now()
			c0 := rdtsc()
			s0 := time.Since(t0)
			time.Sleep(20 * time.Millisecond)
			t1 := time.Now()
			c1 := rdtsc()
			s1 := time.Since(t1)
			el := t1.Sub(t0)
			if c1 <= c0 || el <= 0 {
				continue
			}
			if s0+s1 < bestSpan {
				bestSpan = s0 + s1
				best = (c1 - c0) * uint64(time.Millisecond) / uint64(el)
			}
		}
		// Round to the nearest MHz: TSCs tick at whole megahertz.
		tscKHz = (best + 500) / 1000 * 1000
	})
	return tscKHz
}

// tscAppend is the command line option that spares a TCG guest the TSC
// calibration: without ACPI (HPET, PM timer) a loaded host makes it fail,
// the kernel marks the TSC unstable and falls back to the jiffies clock,
// whose lost ticks make the guest's uptime and throughput figures wrong.
// Kernels before 5.3 ignore the option.
func tscAppend() string {
	if k := hostTSCKHz(); k > 0 {
		return fmt.Sprintf("tsc_early_khz=%d", k)
	}
	return ""
}
