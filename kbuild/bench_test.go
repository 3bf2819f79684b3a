package kbuild

import (
	"context"
	"testing"
	"time"
)

// BenchmarkBuild measures, in one run (go test -bench Build -run '^$'
// -benchtime 1x ./kbuild/): a full build of Linux 6.1 (tinyconfig +
// fragments) with an empty ccache and a new build slot, an incremental
// build after a one-file change in the same slot, and a cache hit. Goals:
// incremental <= 60 s, hit <= 1 s.
func BenchmarkBuild(b *testing.B) {
	f := kernelFixture(b)
	cache, ccache := b.TempDir(), b.TempDir()
	opts := func(name string) Options {
		o := f.options(f.commits[name])
		o.CacheDir, o.CcacheDir, o.Log = cache, ccache, nil
		return o
	}
	ctx := context.Background()
	built := false
	report := func(b *testing.B, a *Artifact, elapsed time.Duration) {
		b.ReportMetric(elapsed.Seconds(), "s/build")
		if !a.CacheHit {
			b.ReportMetric(a.Timings.Make.Seconds(), "make-s")
		}
	}
	b.Run("full", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			o := opts("A")
			if i > 0 {
				b.StopTimer()
				o.CacheDir, o.CcacheDir = b.TempDir(), b.TempDir()
				b.StartTimer()
			}
			start := time.Now()
			a, err := Build(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			report(b, a, time.Since(start))
		}
		built = true
	})
	b.Run("incremental", func(b *testing.B) {
		if !built {
			b.StopTimer()
			if _, err := Build(ctx, opts("A")); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		// A -> B changes one file; then B <-> C (a comment in the same
		// file) for more iterations, rebuilding each time.
		names := []string{"B", "C"}
		for i := 0; i < b.N; i++ {
			o := opts(names[i%2])
			o.NoCache = true
			start := time.Now()
			a, err := Build(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			report(b, a, time.Since(start))
		}
	})
	b.Run("hit", func(b *testing.B) {
		b.StopTimer()
		if _, err := Build(ctx, opts("A")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			a, err := Build(ctx, opts("A"))
			if err != nil || !a.CacheHit {
				b.Fatalf("not a hit: %v", err)
			}
			report(b, a, time.Since(start))
		}
	})
}
