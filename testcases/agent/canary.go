package agent

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/kbisect/kbisect/testcases/proto"
)

// simdCanary holds known values in the SIMD registers of one thread for as
// long as ctx lasts, yielding the CPU between checks, and reports every
// time one changed under it: then something below the application (the
// kernel's FPU switching on interrupts and context switches, a hypervisor
// or the emulator beneath it) lost user SIMD state, the damage the
// corruption shapes of lazy-FPU kernels point at. It runs on amd64 only.
func simdCanary(ctx context.Context, seed uint64) *proto.SIMDCanary {
	if !canaryAvailable {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	res := &proto.SIMDCanary{}
	start := time.Now()
	for ctx.Err() == nil {
		var pat [15][16]byte
		for i := range pat {
			binary.LittleEndian.PutUint64(pat[i][:8], rng.Uint64())
			binary.LittleEndian.PutUint64(pat[i][8:], rng.Uint64())
		}
		var got [16]byte
		// 64 rounds of about 4096 PAUSEs and a yield: a few milliseconds,
		// short enough for Go's scheduler (assembly is not preemptible).
		bad := simdHold(&pat, 64, &got)
		res.Checks += 64
		if bad == 0 {
			continue
		}
		res.Clobbered++
		if len(res.Samples) < 8 {
			res.Samples = append(res.Samples, proto.SIMDClobber{
				Register: bad - 1,
				Expected: append(proto.HexBytes(nil), pat[bad-1][:]...),
				Seen:     append(proto.HexBytes(nil), got[:]...),
				Seconds:  time.Since(start).Seconds(),
			})
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}
