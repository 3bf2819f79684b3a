package vm

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// KernelFormat is the kind of a kernel image file.
type KernelFormat string

// Kernel image formats InspectKernel recognises.
const (
	// FormatBzImage is an x86 boot image (arch/x86/boot/bzImage, /boot/vmlinuz-*).
	FormatBzImage KernelFormat = "bzImage"
	// FormatELF is an uncompressed ELF kernel (the build tree's vmlinux).
	FormatELF KernelFormat = "vmlinux"
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the ELF note that
// carries the 32-bit PVH entry point (Linux >= 4.11 with CONFIG_PVH).
const xenElfnotePhys32Entry = 18

// KernelInfo describes a kernel image.
type KernelInfo struct {
	// Path is the inspected file.
	Path   string
	Format KernelFormat
	// Release is the kernel release ("6.1.0-56-amd64"), the name of its
	// modules directory under /lib/modules. Empty if the image does not say.
	Release string
	// Version is the whole version string when known, e.g. "6.1.0-56-amd64
	// (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian ...".
	Version string
	// BootProtocol is the bzImage setup header version (0x20f for 2.15).
	BootProtocol uint16
	// Compression names the bzImage payload compression ("gzip", "xz",
	// "zstd", "lz4", "lzma", "bzip2", "lzo"); empty for an ELF or when the
	// payload is not described (boot protocol < 2.08).
	Compression string
	// PVH reports an ELF image with the XEN_ELFNOTE_PHYS32_ENTRY note:
	// QEMU boots it directly with -kernel, skipping firmware real-mode setup
	// and in-guest decompression.
	PVH bool
	// PVHEntry is the physical PVH entry point when PVH is set.
	PVHEntry uint64
}

// NotKernelError reports a file that is not a Linux kernel image.
type NotKernelError struct {
	Path   string
	Detail string
}

func (e *NotKernelError) Error() string {
	return fmt.Sprintf("%s is not a Linux kernel image (bzImage or vmlinux): %s; pass arch/x86/boot/bzImage, vmlinux or /boot/vmlinuz-*", e.Path, e.Detail)
}

// InspectKernel tells a bzImage from an ELF vmlinux, extracts the release
// string and, for an ELF, whether it has the PVH entry note. Anything else is
// a *NotKernelError.
func InspectKernel(path string) (*KernelInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kernel image: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &NotKernelError{Path: path, Detail: "not a regular file"}
	}
	head := make([]byte, 0x1000)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("kernel image %s: %w", path, err)
	}
	head = head[:n]
	switch {
	case len(head) >= 4 && string(head[:4]) == elf.ELFMAG:
		return inspectELF(path, f)
	case len(head) >= 0x210 && string(head[0x202:0x206]) == "HdrS":
		return inspectBzImage(path, f, st.Size())
	case len(head) >= 0x210 && head[0x1fe] == 0x55 && head[0x1ff] == 0xaa:
		return nil, &NotKernelError{Path: path, Detail: "a boot sector without the Linux setup header (HdrS)"}
	}
	return nil, &NotKernelError{Path: path, Detail: "no ELF magic and no setup header magic HdrS at 0x202"}
}

// setup header fields (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offKernelVersion = 0x20e
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
)

func inspectBzImage(path string, f *os.File, size int64) (*KernelInfo, error) {
	hdr := make([]byte, 0x260)
	if _, err := f.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("kernel image %s: %w", path, err)
	}
	ki := &KernelInfo{Path: path, Format: FormatBzImage}
	ki.BootProtocol = binary.LittleEndian.Uint16(hdr[offVersion:])
	if ki.BootProtocol >= 0x200 {
		if kv := binary.LittleEndian.Uint16(hdr[offKernelVersion:]); kv != 0 {
			buf := make([]byte, 256)
			n, _ := f.ReadAt(buf, int64(kv)+0x200)
			buf = buf[:n]
			if i := bytes.IndexByte(buf, 0); i >= 0 {
				buf = buf[:i]
			}
			ki.Version = strings.TrimSpace(string(buf))
			ki.Release, _, _ = strings.Cut(ki.Version, " ")
		}
	}
	if ki.BootProtocol >= 0x208 {
		off, length, err := payloadRange(hdr, size)
		if err != nil {
			return nil, &NotKernelError{Path: path, Detail: err.Error()}
		}
		magic := make([]byte, 6)
		if length >= 6 {
			f.ReadAt(magic, off)
			ki.Compression = compressionOf(magic)
		}
	}
	return ki, nil
}

// payloadRange returns where the compressed vmlinux lies in a bzImage
// (boot protocol >= 2.08).
func payloadRange(hdr []byte, size int64) (off, length int64, err error) {
	setupSects := int64(hdr[offSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	off = (setupSects+1)*512 + int64(binary.LittleEndian.Uint32(hdr[offPayloadOffset:]))
	length = int64(binary.LittleEndian.Uint32(hdr[offPayloadLength:]))
	if off+length > size || length < 8 {
		return 0, 0, fmt.Errorf("payload (%d bytes at %#x) lies outside the %d-byte file: truncated image?", length, off, size)
	}
	return off, length, nil
}

// compressionMagics are the payload compressions of arch/x86/boot/compressed,
// by leading bytes.
var compressionMagics = []struct {
	name  string
	magic []byte
}{
	{"gzip", []byte{0x1f, 0x8b}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}},
	{"bzip2", []byte("BZh")},
	{"lzo", []byte{0x89, 'L', 'Z', 'O'}},
	{"lzma", []byte{0x5d, 0x00, 0x00}},
}

func compressionOf(magic []byte) string {
	for _, c := range compressionMagics {
		if bytes.HasPrefix(magic, c.magic) {
			return c.name
		}
	}
	return "unknown"
}

var bannerRE = regexp.MustCompile(`Linux version (\S+) \([^\x00\n]*`)

func inspectELF(path string, f *os.File) (*KernelInfo, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, &NotKernelError{Path: path, Detail: fmt.Sprintf("bad ELF: %v", err)}
	}
	if ef.Type != elf.ET_EXEC || (ef.Machine != elf.EM_X86_64 && ef.Machine != elf.EM_386) {
		return nil, &NotKernelError{Path: path, Detail: fmt.Sprintf("ELF %s for %s, not an x86 kernel executable", ef.Type, ef.Machine)}
	}
	ki := &KernelInfo{Path: path, Format: FormatELF}
	if entry, ok := pvhEntry(ef); ok {
		ki.PVH, ki.PVHEntry = true, entry
	}
	// The banner (linux_banner) sits in .rodata: "Linux version 6.1.0 (...) #1 ...".
	sec := ef.Section(".rodata")
	var r io.Reader
	if sec != nil {
		r = sec.Open()
	} else {
		r = io.NewSectionReader(f, 0, 1<<40)
	}
	m := findBanner(r)
	if m == nil {
		// Every kernel has the banner; an ELF without it is another program.
		return nil, &NotKernelError{Path: path, Detail: "an x86 ELF executable without the \"Linux version\" banner"}
	}
	ki.Version = strings.TrimSpace(strings.TrimPrefix(m[0], "Linux version "))
	ki.Release = m[1]
	return ki, nil
}

// findBanner scans r for the kernel banner in overlapping chunks. Linux >=
// 6.1 also has an earlier copy without the build number ("# SMP"); the one
// with "#<n>" is preferred.
func findBanner(r io.Reader) []string {
	br := bufio.NewReaderSize(r, 1<<20)
	const overlap = 512
	buf := make([]byte, 0, 1<<20+overlap)
	chunk := make([]byte, 1<<20)
	var found []string
	for {
		n, err := io.ReadFull(br, chunk)
		buf = append(buf, chunk[:n]...)
		for _, m := range bannerRE.FindAllSubmatch(buf, -1) {
			// Skip format strings such as "Linux version %s".
			if bytes.Contains(m[1], []byte("%")) {
				continue
			}
			cand := []string{string(m[0]), string(m[1])}
			if buildNumRE.Match(m[0]) {
				return cand
			}
			if found == nil {
				found = cand
			}
		}
		if err != nil {
			return found
		}
		if len(buf) > overlap {
			buf = append(buf[:0], buf[len(buf)-overlap:]...)
		}
	}
}

var buildNumRE = regexp.MustCompile(`\) #[0-9]`)

// pvhEntry looks for the Xen PHYS32_ENTRY note in the PT_NOTE segments (or
// SHT_NOTE sections of a stripped-of-phdrs file).
func pvhEntry(ef *elf.File) (uint64, bool) {
	var readers []io.Reader
	for _, p := range ef.Progs {
		if p.Type == elf.PT_NOTE {
			readers = append(readers, p.Open())
		}
	}
	if len(readers) == 0 {
		for _, s := range ef.Sections {
			if s.Type == elf.SHT_NOTE {
				readers = append(readers, s.Open())
			}
		}
	}
	for _, r := range readers {
		data, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			continue
		}
		if e, ok := parseNotes(data, ef.ByteOrder); ok {
			return e, true
		}
	}
	return 0, false
}

func parseNotes(data []byte, bo binary.ByteOrder) (uint64, bool) {
	align := func(n uint32) int { return int((n + 3) &^ 3) }
	for len(data) >= 12 {
		namesz, descsz, typ := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		if align(namesz) > len(data) {
			return 0, false
		}
		name := strings.TrimRight(string(data[:namesz]), "\x00")
		data = data[align(namesz):]
		if align(descsz) > len(data) {
			return 0, false
		}
		desc := data[:descsz]
		data = data[align(descsz):]
		if name == "Xen" && typ == xenElfnotePhys32Entry {
			switch len(desc) {
			case 4:
				return uint64(bo.Uint32(desc)), true
			case 8:
				return bo.Uint64(desc), true
			}
		}
	}
	return 0, false
}

// ExtractVmlinux decompresses the vmlinux inside a bzImage (boot protocol >=
// 2.08) and writes it to dst. It needs the xz tool for xz and lzma payloads
// (Debian's kernels) and lzop for lzo; gzip, bzip2, zstd and lz4 are decoded
// in Go.
func ExtractVmlinux(ctx context.Context, bzImage, dst string) error {
	ki, err := InspectKernel(bzImage)
	if err != nil {
		return err
	}
	if ki.Format != FormatBzImage {
		return fmt.Errorf("extract vmlinux: %s is already an ELF kernel", bzImage)
	}
	if ki.BootProtocol < 0x208 {
		return fmt.Errorf("extract vmlinux from %s: boot protocol %#x does not describe its payload (needs >= 2.08, Linux 2.6.26)", bzImage, ki.BootProtocol)
	}
	f, err := os.Open(bzImage)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	hdr := make([]byte, 0x260)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImage, err)
	}
	off, length, err := payloadRange(hdr, st.Size())
	if err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImage, err)
	}
	// The build appends the decompressed size as 4 little-endian bytes.
	sizeBuf := make([]byte, 4)
	if _, err := f.ReadAt(sizeBuf, off+length-4); err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImage, err)
	}
	wantSize := int64(binary.LittleEndian.Uint32(sizeBuf))
	payload := io.NewSectionReader(f, off, length-4)

	tmp, err := os.CreateTemp(filepath.Dir(dst), ".vmlinux-*")
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := decompress(ctx, ki.Compression, payload, tmp); err != nil {
		return fmt.Errorf("extract vmlinux from %s (%s payload): %w", bzImage, ki.Compression, err)
	}
	got, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	if got != wantSize {
		return fmt.Errorf("extract vmlinux from %s: decompressed %d bytes, the image says %d", bzImage, got, wantSize)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	if _, err := InspectKernel(tmp.Name()); err != nil {
		return fmt.Errorf("extract vmlinux from %s: the payload is not an ELF kernel: %w", bzImage, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	return nil
}

func decompress(ctx context.Context, kind string, r io.Reader, w io.Writer) error {
	var dec io.Reader
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		zr.Multistream(false)
		dec = zr
	case "bzip2":
		dec = bzip2.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		dec = zr
	case "lz4":
		dec = lz4.NewReader(r)
	case "xz", "lzma", "lzo":
		// Kernel xz payloads use the x86 BCJ filter, which Go decoders lack.
		tool, args := "xz", []string{"-dc", "-q"}
		switch kind {
		case "lzma":
			args = append(args, "--format=lzma")
		case "lzo":
			tool = "lzop"
		}
		path, err := exec.LookPath(tool)
		if err != nil {
			return fmt.Errorf("the %s tool is needed to decompress it (apt-get install %s): %w", tool, map[string]string{"xz": "xz-utils", "lzop": "lzop"}[tool], err)
		}
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Stdin, cmd.Stdout = r, w
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", tool, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	default:
		return fmt.Errorf("unsupported payload compression %q", kind)
	}
	_, err := io.Copy(w, ctxReader{ctx, dec})
	return err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// PVHImage returns a kernel that QEMU can boot through PVH for the image at
// path: path itself for a PVH-capable ELF; for a bzImage, its vmlinux
// extracted once into the cache (keyed by the image's SHA-256) when that
// vmlinux has the PVH note. ok is false when the kernel cannot boot via PVH
// (no CONFIG_PVH, or a payload this package cannot extract); err is set only
// for infrastructure failures (unreadable file, full disk).
func PVHImage(ctx context.Context, path string) (image string, ok bool, err error) {
	ki, err := InspectKernel(path)
	if err != nil {
		return "", false, err
	}
	if ki.Format == FormatELF {
		return path, ki.PVH, nil
	}
	if ki.BootProtocol < 0x208 {
		return "", false, nil
	}
	switch ki.Compression {
	case "gzip", "bzip2", "zstd", "lz4", "xz", "lzma":
	default:
		return "", false, nil
	}
	// One extraction at a time: the two guests of a pair often share a
	// kernel, and the second then finds the first's result.
	extractMu.Lock()
	defer extractMu.Unlock()
	sum, err := fileSHA256(path)
	if err != nil {
		return "", false, fmt.Errorf("kernel image %s: %w", path, err)
	}
	dir := cachedir.Dir("vmlinux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("vmlinux cache: %w", err)
	}
	base := filepath.Join(dir, sum[:32])
	// A marker records that the payload has no PVH note, so a non-PVH image
	// is not decompressed on every boot.
	if _, err := os.Stat(base + ".nopvh"); err == nil {
		return "", false, nil
	}
	elfPath := base + ".elf"
	if _, err := os.Stat(elfPath); err != nil {
		if err := ExtractVmlinux(ctx, path, elfPath); err != nil {
			if ctx.Err() != nil {
				return "", false, err
			}
			// An extraction failure (missing xz tool, odd payload) only
			// costs the faster boot path.
			return "", false, nil
		}
	}
	eki, err := InspectKernel(elfPath)
	if err != nil {
		os.Remove(elfPath)
		return "", false, nil
	}
	if !eki.PVH {
		os.Remove(elfPath)
		os.WriteFile(base+".nopvh", nil, 0o644)
		return "", false, nil
	}
	return elfPath, true, nil
}

var extractMu sync.Mutex

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
