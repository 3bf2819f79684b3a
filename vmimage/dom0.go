package vmimage

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Dom0Package is the main package of the Xen dom0 controller, /init of the
// dom0 image.
const Dom0Package = ModulePath + "/cmd/kbisect-dom0"

// Dom0Modules are the modules a dom0 kernel needs to run kbisect's domUs:
// the toolstack's device files, netback, the bridge, nftables with
// conntrack NAT for the nat topology, and 9p over virtio for the captures.
var Dom0Modules = []string{
	"xenfs", "xen-privcmd", "xen-evtchn", "xen-gntdev", "xen-gntalloc",
	"xen-netback", "bridge",
	// libcrc32c (nf_tables, nf_conntrack) asks for crc32c by name.
	"crc32c_generic", "nf_tables", "nf_conntrack", "nf_nat", "nft_chain_nat", "nft_masq", "nft_ct",
	// The host directory the pcaps go to (virtio-9p).
	"virtio_pci", "9pnet_virtio", "9p",
}

// XenTools are the programs of Debian's Xen 4.17 toolstack that dom0 runs,
// and the nft binary for the NAT; their shared libraries come along.
var XenTools = []string{
	"/usr/lib/xen-4.17/bin/xl",
	"/usr/lib/xen-4.17/bin/xenstored",
	"/usr/lib/xen-4.17/bin/xenconsoled",
	"/usr/lib/xen-4.17/bin/xen-init-dom0",
	"/usr/bin/xenstore-read",
	"/usr/bin/xenstore-write",
	"/usr/sbin/nft",
	// glibc loads it for pthread_cancel (xl's threads).
	"/lib/x86_64-linux-gnu/libgcc_s.so.1",
}

// libDirs are where ToolFiles looks for shared libraries, in order.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/usr/lib/xen-4.17/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
}

// Dom0Options say what goes into a dom0 image.
type Dom0Options struct {
	// ModulesDir is the dom0 kernel's /lib/modules/<release>; empty for a
	// kernel with everything built in.
	ModulesDir string
	// SourceDir and CacheDir are as in Options.
	SourceDir string
	CacheDir  string
	// Log is as in Options.
	Log interface{ Write([]byte) (int, error) }
}

// BuildDom0 returns the dom0 base image: the controller as /init and the
// dom0 modules. The toolstack (ToolFiles) and the per-run files are
// appended with WithFiles.
func BuildDom0(ctx context.Context, o Dom0Options) (*Image, error) {
	opts := Options{Agent: Dom0Package, SourceDir: o.SourceDir, CacheDir: o.CacheDir, Log: o.Log}
	if o.ModulesDir != "" {
		opts.ModulesDir = o.ModulesDir
		opts.Modules = Dom0Modules
	}
	img, err := Build(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("dom0 image: %w", err)
	}
	return img, nil
}

// ToolFiles reads the programs (absolute paths under root, "/" for this
// machine) and every shared library they need, with the dynamic loader,
// as in-image path -> contents for WithFiles. Symbolic links are followed:
// a library is stored under the name the programs ask for. The files are
// stored with mode 0644; the dom0 controller makes them executable.
func ToolFiles(root string, programs []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	seen := map[string]bool{}
	var queue []string
	add := func(inImage, onHost string) error {
		if _, ok := files[inImage]; ok {
			return nil
		}
		b, err := os.ReadFile(onHost)
		if err != nil {
			return err
		}
		files[inImage] = b
		queue = append(queue, onHost)
		return nil
	}
	for _, p := range programs {
		if err := add(p, filepath.Join(root, p)); err != nil {
			return nil, fmt.Errorf("xen toolstack: %w (apt-get install xen-utils-4.17 xenstore-utils nftables)", err)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("xen toolstack: %s: %w", p, err)
		}
		libs, err := f.ImportedLibraries()
		interp := ""
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					interp = string(b[:len(b)-1])
				}
			}
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("xen toolstack: %s: %w", p, err)
		}
		if interp != "" {
			if err := add(interp, filepath.Join(root, interp)); err != nil {
				return nil, fmt.Errorf("xen toolstack: loader of %s: %w", p, err)
			}
		}
		sort.Strings(libs)
		for _, l := range libs {
			found := false
			for _, d := range libDirs {
				hp := filepath.Join(root, d, l)
				if _, err := os.Stat(hp); err == nil {
					if err := add(filepath.Join("/lib/x86_64-linux-gnu", l), hp); err != nil {
						return nil, fmt.Errorf("xen toolstack: %w", err)
					}
					found = true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("xen toolstack: %s needs %s, which is in none of %v", p, l, libDirs)
			}
		}
	}
	return files, nil
}
