package vm

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGzipRoundTrip: gzipFile compresses atomically (no temporary file
// left), and xenELF decompresses a gzip image into the cache once, and
// takes an uncompressed one as it is.
func TestGzipRoundTrip(t *testing.T) {
	t.Setenv("KBISECT_CACHE", t.TempDir())
	dir := t.TempDir()
	src, gz := filepath.Join(dir, "xen"), filepath.Join(dir, "xen.gz")
	data := []byte(strings.Repeat("\x7fELF hypervisor ", 4096))
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gzipFile(src, gz); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left in the directory: %v", ents)
	}
	f, err := os.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	back.ReadFrom(zr)
	f.Close()
	if !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("gzipFile: %d bytes back, want %d", back.Len(), len(data))
	}
	if err := gzipFile(filepath.Join(dir, "missing"), gz); err == nil {
		t.Error("gzipFile of a missing file succeeded")
	}
	elf, err := xenELF(gz)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(elf); !bytes.Equal(b, data) {
		t.Errorf("xenELF wrote %d bytes, want %d", len(b), len(data))
	}
	if again, err := xenELF(gz); err != nil || again != elf {
		t.Errorf("second xenELF: %s, %v; want the cached %s", again, err, elf)
	}
	if plain, err := xenELF(src); err != nil || plain != src {
		t.Errorf("xenELF of an uncompressed image: %s, %v", plain, err)
	}
}
