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
	"encoding/json"
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
	"github.com/kbisect/kbisect/internal/fsutil"
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

// Xen ELF notes (xen/include/public/elfnote.h) a kernel carries.
const (
	// xenElfnoteEntry is XEN_ELFNOTE_ENTRY, the PV entry point: every
	// kernel built with Xen PV guest support has it.
	xenElfnoteEntry = 1
	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the 32-bit PVH
	// entry point (Linux >= 4.11 with CONFIG_XEN_PVH, >= 5.0 with
	// CONFIG_PVH).
	xenElfnotePhys32Entry = 18
)

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
	// PVH reports an ELF image with the XEN_ELFNOTE_PHYS32_ENTRY note: Xen
	// can run it as a PVH domU, and QEMU boots it directly with -kernel,
	// skipping firmware real-mode setup and in-guest decompression, when
	// QEMUBootsPVH says so (not before 5.0).
	PVH bool
	// PVHEntry is the physical PVH entry point when PVH is set.
	PVHEntry uint64
	// XenPV reports an ELF image with Xen's PV entry note: the kernel can
	// run as a Xen PV domU.
	XenPV bool
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
	notes := readXenNotes(ef)
	ki.PVH, ki.PVHEntry, ki.XenPV = notes.phys32, notes.phys32Entry, notes.pv
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

// xenNotes are the Xen ELF notes a kernel carries.
type xenNotes struct {
	pv          bool // XEN_ELFNOTE_ENTRY
	phys32      bool // XEN_ELFNOTE_PHYS32_ENTRY
	phys32Entry uint64
}

// readXenNotes reads the Xen notes of the PT_NOTE segments (or SHT_NOTE
// sections of a stripped-of-phdrs file).
func readXenNotes(ef *elf.File) xenNotes {
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
	var n xenNotes
	for _, r := range readers {
		data, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			continue
		}
		parseNotes(data, ef.ByteOrder, &n)
	}
	return n
}

func parseNotes(data []byte, bo binary.ByteOrder, n *xenNotes) {
	align := func(n uint32) int { return int((n + 3) &^ 3) }
	for len(data) >= 12 {
		namesz, descsz, typ := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		if align(namesz) > len(data) {
			return
		}
		name := strings.TrimRight(string(data[:namesz]), "\x00")
		data = data[align(namesz):]
		if align(descsz) > len(data) {
			return
		}
		desc := data[:descsz]
		data = data[align(descsz):]
		if name != "Xen" {
			continue
		}
		switch typ {
		case xenElfnoteEntry:
			n.pv = true
		case xenElfnotePhys32Entry:
			switch len(desc) {
			case 4:
				n.phys32, n.phys32Entry = true, uint64(bo.Uint32(desc))
			case 8:
				n.phys32, n.phys32Entry = true, bo.Uint64(desc)
			}
		}
	}
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
	// The payload ends with the decompressed size as 4 little-endian bytes:
	// gzip's own trailer (ISIZE) for gzip, appended by the build
	// (size_append) for the other compressions, which it is not part of.
	sizeBuf := make([]byte, 4)
	if _, err := f.ReadAt(sizeBuf, off+length-4); err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", bzImage, err)
	}
	wantSize := int64(binary.LittleEndian.Uint32(sizeBuf))
	stream := length
	if ki.Compression != "gzip" {
		stream -= 4
	}
	payload := io.NewSectionReader(f, off, stream)

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
// (no PVH note, a release whose note only Xen can use, or a payload this
// package cannot extract); err is set only for infrastructure failures
// (unreadable file, full disk).
func PVHImage(ctx context.Context, path string) (image string, ok bool, err error) {
	elfPath, info, ok, err := vmlinuxOf(ctx, path)
	if err != nil || !ok || !QEMUBootsPVH(info) {
		return "", false, err
	}
	return elfPath, true, nil
}

// XenBootImage returns the image to hand xl for a domU of guestType (XenPV
// or XenPVH) running the kernel at path, or an error that says why the
// kernel cannot be that kind of guest (checked from its Xen ELF notes, so
// that nothing boots for nothing). xl's loader unpacks a bzImage's payload
// in dom0's user space, which under nested TCG took 55 s for two Debian
// (XZ) kernels while it inflates a gzip-compressed vmlinux in a few seconds:
// a bzImage whose vmlinux can be extracted goes as that vmlinux,
// gzip-compressed once in the cache. An image whose payload cannot be
// looked into goes as it is, unchecked.
func XenBootImage(ctx context.Context, path, guestType string) (string, error) {
	elfPath, info, ok, err := vmlinuxOf(ctx, path)
	if err != nil {
		return "", err
	}
	if !ok {
		return path, nil
	}
	rel := info.Release
	if rel == "" {
		rel = "of unknown release"
	}
	switch guestType {
	case XenPVH:
		if !info.PVH {
			return "", fmt.Errorf("kernel %s (Linux %s) cannot run as a Xen PVH domU: it has no PVH entry note (Linux 4.11 or later with CONFIG_XEN_PVH); use --xen-guest pv", path, rel)
		}
	default:
		if !info.XenPV {
			return "", fmt.Errorf("kernel %s (Linux %s) cannot run as a Xen PV domU: it has no Xen PV entry note (built without CONFIG_XEN); build it with --hypervisor xen, which adds the xen-guest fragment", path, rel)
		}
	}
	if elfPath == path {
		return path, nil
	}
	gz := elfPath + ".gz"
	if _, err := os.Stat(gz); err == nil {
		return gz, nil
	}
	if err := gzipFile(elfPath, gz); err != nil {
		return path, nil
	}
	return gz, nil
}

// vmlinuxOf returns the ELF kernel of the image at path and what
// InspectKernel says of it: path itself for an ELF; for a bzImage, its
// vmlinux extracted once into the cache (keyed by the image's SHA-256). The
// extracted file is kept only when it is worth booting (a PVH or Xen PV
// kernel); a small record of its notes is kept either way, so a payload is
// decompressed once. ok is false when the payload cannot be looked into
// (boot protocol < 2.08, a compression this package cannot undo).
func vmlinuxOf(ctx context.Context, path string) (elfPath string, info *KernelInfo, ok bool, err error) {
	ki, err := InspectKernel(path)
	if err != nil {
		return "", nil, false, err
	}
	if ki.Format == FormatELF {
		return path, ki, true, nil
	}
	if ki.BootProtocol < 0x208 {
		return "", nil, false, nil
	}
	switch ki.Compression {
	case "gzip", "bzip2", "zstd", "lz4", "xz", "lzma":
	default:
		return "", nil, false, nil
	}
	// One extraction at a time: the two guests of a pair often share a
	// kernel, and the second then finds the first's result.
	extractMu.Lock()
	defer extractMu.Unlock()
	sum, err := fileSHA256(path)
	if err != nil {
		return "", nil, false, fmt.Errorf("kernel image %s: %w", path, err)
	}
	dir := cachedir.Dir("vmlinux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, false, fmt.Errorf("vmlinux cache: %w", err)
	}
	base := filepath.Join(dir, sum[:32])
	elfPath, notesPath := base+".elf", base+".notes"
	if data, err := os.ReadFile(notesPath); err == nil {
		var rec notesRecord
		if json.Unmarshal(data, &rec) == nil {
			eki := &KernelInfo{Path: elfPath, Format: FormatELF, Release: ki.Release, Version: ki.Version, PVH: rec.PVH, XenPV: rec.XenPV}
			if rec.Kept {
				if _, err := os.Stat(elfPath); err == nil {
					return elfPath, eki, true, nil
				}
			} else {
				return "", eki, true, nil
			}
		}
	}
	if _, err := os.Stat(elfPath); err != nil {
		if err := ExtractVmlinux(ctx, path, elfPath); err != nil {
			if ctx.Err() != nil {
				return "", nil, false, err
			}
			// An extraction failure (missing xz tool, odd payload) only
			// costs the faster boot and the early checks.
			return "", nil, false, nil
		}
	}
	eki, err := InspectKernel(elfPath)
	if err != nil {
		os.Remove(elfPath)
		return "", nil, false, nil
	}
	rec := notesRecord{PVH: eki.PVH, XenPV: eki.XenPV, Kept: eki.PVH || eki.XenPV}
	if !rec.Kept {
		os.Remove(elfPath)
		elfPath = ""
	}
	data, _ := json.Marshal(rec)
	if err := fsutil.WriteFile(notesPath, data, 0o644); err != nil {
		return "", nil, false, fmt.Errorf("vmlinux cache: %w", err)
	}
	return elfPath, eki, true, nil
}

// notesRecord is what the vmlinux cache remembers of an extracted kernel.
type notesRecord struct {
	PVH   bool `json:"pvh"`
	XenPV bool `json:"xen_pv"`
	// Kept says whether the extracted vmlinux was kept.
	Kept bool `json:"kept"`
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
