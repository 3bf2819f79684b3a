package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/testenv"
)

func TestInspectKernelDebian(t *testing.T) {
	k := testKernel(t)
	ki, err := InspectKernel(k)
	if err != nil {
		t.Fatal(err)
	}
	// /boot/vmlinuz-<release> names its release; so does /lib/modules.
	want := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
	if ki.Format != FormatBzImage || ki.Release != want {
		t.Errorf("InspectKernel(%s) = %s release %q, want bzImage release %q", k, ki.Format, ki.Release, want)
	}
	if !strings.HasPrefix(ki.Version, want+" (") {
		t.Errorf("version %q does not start with the release", ki.Version)
	}
	if ki.BootProtocol < 0x20f || ki.Compression == "" || ki.Compression == "unknown" {
		t.Errorf("boot protocol %#x, compression %q", ki.BootProtocol, ki.Compression)
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", ki.Release)); err != nil {
		t.Errorf("release %q has no modules directory: %v", ki.Release, err)
	}

	// Its vmlinux, extracted, is an ELF with the same release and (Debian
	// has CONFIG_PVH=y) the PVH note.
	vmlinux := filepath.Join(t.TempDir(), "vmlinux")
	if err := ExtractVmlinux(context.Background(), k, vmlinux); err != nil {
		t.Fatal(err)
	}
	eki, err := InspectKernel(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	// The ELF banner also names the compiler, the setup header does not;
	// both end with the same build string.
	_, build, _ := strings.Cut(ki.Version, ") #")
	if eki.Format != FormatELF || eki.Release != ki.Release || !strings.HasSuffix(eki.Version, ") #"+build) {
		t.Errorf("extracted vmlinux: %s %q %q, want vmlinux %q ending in %q", eki.Format, eki.Release, eki.Version, ki.Release, build)
	}
	if !eki.PVH || eki.PVHEntry == 0 || eki.PVHEntry >= 1<<32 {
		t.Errorf("extracted vmlinux: PVH %v entry %#x, want a 32-bit PVH entry", eki.PVH, eki.PVHEntry)
	}

	// PVHImage caches the extraction: the second call returns the same file.
	img1, ok, err := PVHImage(context.Background(), k)
	if err != nil || !ok {
		t.Fatalf("PVHImage: %q %v %v", img1, ok, err)
	}
	img2, _, _ := PVHImage(context.Background(), k)
	if img1 != img2 {
		t.Errorf("PVHImage not cached: %s then %s", img1, img2)
	}
	if img, ok, err := PVHImage(context.Background(), vmlinux); err != nil || !ok || img != vmlinux {
		t.Errorf("PVHImage(ELF) = %q %v %v, want the file itself", img, ok, err)
	}
}

func TestInspectKernelRejects(t *testing.T) {
	dir := t.TempDir()
	k := testKernel(t)
	head := make([]byte, 8192)
	f, err := os.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	f.Read(head)
	f.Close()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bootSector := make([]byte, 1024)
	bootSector[0x1fe], bootSector[0x1ff] = 0x55, 0xaa
	tests := []struct {
		name, path, want string
	}{
		{"text", write("notes.txt", []byte("just some text, not a kernel\n")), "no ELF magic"},
		{"empty", write("empty", nil), "no ELF magic"},
		{"boot sector", write("mbr", bootSector), "without the Linux setup header"},
		{"truncated bzImage", write("trunc", head), "truncated"},
		{"go program", testInit(t), "without the \"Linux version\" banner"},
		{"directory", dir, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ki, err := InspectKernel(tc.path)
			var nk *NotKernelError
			if !errors.As(err, &nk) {
				t.Fatalf("InspectKernel(%s) = %+v, %v; want a NotKernelError", tc.name, ki, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "is not a Linux kernel image (bzImage or vmlinux)") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line with %q", msg, tc.want)
			}
		})
	}
	if _, err := InspectKernel(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

// TestELFQEMUCannotBoot: a vmlinux whose PVH note is removed is still a
// kernel, but QEMU cannot boot it, and Start says so; nor one whose note
// is CONFIG_XEN_PVH's (a release from 4.11 to 4.20: Debian's vmlinux with
// its release string made 4.14.5's).
func TestELFQEMUCannotBoot(t *testing.T) {
	img, ok, err := PVHImage(context.Background(), testKernel(t))
	if err != nil || !ok {
		testenv.Missing(t, fmt.Sprintf("no PVH vmlinux to start from (Debian's kernel has one): %v", err))
	}
	orig, err := InspectKernel(img)
	if err != nil {
		t.Fatal(err)
	}
	// The release string, same length, made 4.14.5-...
	rel414 := ("4.14.5-" + strings.Repeat("x", len(orig.Release)))[:len(orig.Release)]
	for _, tc := range []struct {
		name    string
		patch   func(data []byte) int // returns the number of edits
		pvh     bool                  // the patched kernel still has the note
		release string                // the patched kernel's
		want    string                // in Start's error
	}{
		{"no-note", func(data []byte) int {
			// Rename the note: Xen note type 18 -> 0x7f, wherever its header is.
			hdr := []byte{4, 0, 0, 0, 8, 0, 0, 0, 18, 0, 0, 0, 'X', 'e', 'n', 0}
			n := 0
			for i := 0; ; {
				j := bytes.Index(data[i:], hdr)
				if j < 0 {
					return n
				}
				data[i+j+8] = 0x7f
				i += j + len(hdr)
				n++
			}
		}, false, orig.Release, "without the PVH entry note"},
		{"xen-only-note", func(data []byte) int {
			n := 0
			for i := bytes.Index(data, []byte(orig.Release)); i >= 0; i = bytes.Index(data, []byte(orig.Release)) {
				copy(data[i:], rel414)
				n++
			}
			return n
		}, true, rel414, "runs only under Xen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if tc.patch(data) == 0 {
				t.Fatal("nothing to patch found")
			}
			path := filepath.Join(t.TempDir(), "vmlinux-"+tc.name)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			ki, err := InspectKernel(path)
			if err != nil {
				t.Fatal(err)
			}
			if ki.Format != FormatELF || ki.PVH != tc.pvh || ki.Release != tc.release || QEMUBootsPVH(ki) {
				t.Errorf("patched vmlinux: %+v, want an ELF kernel of %s (PVH note %v) that QEMU cannot boot", ki, tc.release, tc.pvh)
			}
			needQEMU(t)
			_, err = Start(context.Background(), Config{Name: tc.name, Kernel: path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestGzipPayload: a bzImage whose payload is gzip (old kernels, and
// kbisect's lean builds) ends with gzip's own size trailer, which is part
// of the stream: extracting it must keep it (it once cut it off, so no old
// kernel could be looked into and PVH was not refused before booting).
// The image is Debian's with its vmlinux put back in gzip-compressed.
func TestGzipPayload(t *testing.T) {
	k := testKernel(t)
	vmlinux, ok, err := PVHImage(context.Background(), k)
	if err != nil || !ok {
		testenv.Missing(t, fmt.Sprintf("no vmlinux to start from (Debian's kernel has one): %v", err))
	}
	elfData, err := os.ReadFile(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(elfData)
	zw.Close()
	setup := int(img[offSetupSects])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(img[offPayloadOffset:]))
	out := append(append([]byte(nil), img[:start]...), gz.Bytes()...)
	binary.LittleEndian.PutUint32(out[offPayloadLength:], uint32(gz.Len()))
	path := filepath.Join(t.TempDir(), "bzImage-gzip")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ki, err := InspectKernel(path)
	if err != nil || ki.Compression != "gzip" {
		t.Fatalf("InspectKernel: %+v, %v; want a gzip bzImage", ki, err)
	}
	dst := filepath.Join(t.TempDir(), "vmlinux")
	if err := ExtractVmlinux(context.Background(), path, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, elfData) {
		t.Errorf("extracted %d bytes, want the %d of the vmlinux put in", len(got), len(elfData))
	}
	// Debian's kernel is a Xen PV and PVH kernel: both are accepted.
	for _, gt := range []string{XenPV, XenPVH} {
		if img, err := XenBootImage(context.Background(), path, gt); err != nil || !strings.HasSuffix(img, ".elf.gz") {
			t.Errorf("XenBootImage(%s) = %q, %v; want the gzip-compressed vmlinux", gt, img, err)
		}
	}
}
