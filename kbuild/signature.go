package kbuild

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Signature returns a hash of what the kernel image in vmlinux loads into
// memory: the name, address, size and contents of every allocated section,
// except notes (build ids). Built reproducibly (kbuild fixes the build
// timestamp, user, host and version), two commits that compile to the same
// kernel get the same signature, so a bisection can tell a no-op commit
// (comments, documentation, code not in this config) from one that changed
// the kernel.
func Signature(vmlinux string) (string, error) {
	f, err := elf.Open(vmlinux)
	if err != nil {
		return "", fmt.Errorf("signature of %s: %w", vmlinux, err)
	}
	defer f.Close()
	h := sha256.New()
	n := 0
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOTE || strings.HasPrefix(s.Name, ".note") || s.Name == ".notes" {
			continue
		}
		fmt.Fprintf(h, "%s\x00", s.Name)
		binary.Write(h, binary.LittleEndian, [3]uint64{uint64(s.Type), s.Addr, s.Size})
		if s.Type != elf.SHT_NOBITS {
			if _, err := io.Copy(h, s.Open()); err != nil {
				return "", fmt.Errorf("signature of %s: section %s: %w", vmlinux, s.Name, err)
			}
		}
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("signature of %s: no allocated sections: not a kernel image", vmlinux)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
