package vmimage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

type benchVariant struct {
	name string
	opts Options
}

// benchVariants are the images the benchmarks compare.
func benchVariants(b *testing.B) []benchVariant {
	src := standInSource(b)
	v := []benchVariant{
		{"minimal", Options{SourceDir: src}},
		{"shell", Options{SourceDir: src, Shell: true}},
	}
	// The real agent, when this checkout has one that builds.
	if root, err := findSourceDir(); err == nil && exists(filepath.Join(root, "cmd", "kbisect-agent", "main.go")) {
		v = append(v, benchVariant{"real-agent", Options{SourceDir: root}})
	}
	if mods := debianModulesOrEmpty(); mods != "" {
		v = append(v,
			benchVariant{"modules", Options{SourceDir: src, ModulesDir: mods}},
			benchVariant{"shell+modules", Options{SourceDir: src, Shell: true, ModulesDir: mods}})
	}
	return v
}

func debianModulesOrEmpty() string {
	ds, _ := filepath.Glob("/lib/modules/6.1.0-*-amd64/modules.dep")
	if len(ds) == 0 {
		return ""
	}
	return filepath.Dir(ds[len(ds)-1])
}

func reportSize(b *testing.B, p string) {
	if st, err := os.Stat(p); err == nil {
		b.ReportMetric(float64(st.Size())/1e6, "image-MB")
	}
}

// BenchmarkBuildCold builds each variant on an empty image cache (the Go
// build cache stays warm; the busybox is built with -a regardless).
func BenchmarkBuildCold(b *testing.B) {
	ctx := context.Background()
	for _, v := range benchVariants(b) {
		b.Run(v.name, func(b *testing.B) {
			var img *Image
			for b.Loop() {
				o := v.opts
				o.CacheDir = b.TempDir()
				var err error
				if img, err = Build(ctx, o); err != nil {
					b.Fatal(err)
				}
			}
			reportSize(b, img.Path)
		})
	}
}

// BenchmarkBuildHit is Build on a warm cache: key computation only (go env,
// hashing the agent's sources, go.sum and the module files).
func BenchmarkBuildHit(b *testing.B) {
	ctx := context.Background()
	for _, v := range benchVariants(b) {
		b.Run(v.name, func(b *testing.B) {
			o := v.opts
			o.CacheDir = sharedCache()
			img, err := Build(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := Build(ctx, o); err != nil {
					b.Fatal(err)
				}
			}
			reportSize(b, img.Path)
		})
	}
}

// BenchmarkWithFiles appends a params.json to each variant.
func BenchmarkWithFiles(b *testing.B) {
	ctx := context.Background()
	params := map[string][]byte{"/kbisect/params.json": make([]byte, 1024)}
	for _, v := range benchVariants(b) {
		b.Run(v.name, func(b *testing.B) {
			o := v.opts
			o.CacheDir = sharedCache()
			img, err := Build(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			out := filepath.Join(b.TempDir(), "run.cpio")
			for b.Loop() {
				if err := WithFiles(ctx, img, params, out); err != nil {
					b.Fatal(err)
				}
			}
			reportSize(b, out)
		})
	}
}

// BenchmarkBoot boots Debian's kernel under TCG with each variant until the
// stand-in /init runs (it then restarts the guest at once) and reports the
// guest uptime at /init: the difference between variants is the cost of
// loading and unpacking the bigger archive. Run with -benchtime=3x or so.
func BenchmarkBoot(b *testing.B) {
	ctx := context.Background()
	kernel, _ := debianKernel(b)
	for _, v := range benchVariants(b) {
		if v.name == "real-agent" { // only the stand-in reports its uptime
			continue
		}
		b.Run(v.name, func(b *testing.B) {
			o := v.opts
			o.CacheDir = sharedCache()
			img, err := Build(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			var up, wall float64
			n := 0
			for b.Loop() {
				r := boot(b, kernel, img.Path)
				up += r.uptime
				wall += r.wall.Seconds()
				n++
			}
			b.ReportMetric(up/float64(n), "init-uptime-s")
			b.ReportMetric(wall/float64(n), "qemu-wall-s")
			reportSize(b, img.Path)
		})
	}
}
