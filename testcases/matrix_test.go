package testcases

import (
	"strings"
	"testing"
)

func TestWriteMatrixMarkdown(t *testing.T) {
	cells := []MatrixCell{
		{Rev: "v3.14.5", Release: "3.14.5", Config: "tinyconfig", Hypervisor: "qemu", Fixups: []string{"ld-max-page-size/1", "module-plt32/1"}, BuildSeconds: 300, Verdict: Pass, Mbit: 46.5, BootSeconds: 1.6, Wire: "clean"},
		{Rev: "v3.14.5", Release: "3.14.5", Config: "tinyconfig", Hypervisor: "xen", BuildSeconds: 300, Verdict: Fail, Mbit: 9.5, BootSeconds: 20, Wire: "encap"},
		{Rev: "v2.6.31", Config: "defconfig", Hypervisor: "qemu", Verdict: Skip, Reason: "build of v2.6.31 failed: arch/x86/kernel/entry_64.S:1306: Error: .size expression | does not evaluate"},
	}
	var b strings.Builder
	WriteMatrixMarkdown(&b, cells, []string{"qemu", "xen"})
	got := b.String()
	for _, want := range []string{
		"| release | config | fixups | build min | qemu boot s | qemu verdict | qemu Mbit/s | xen boot s | xen verdict | xen Mbit/s | ",
		"| 3.14.5 | tinyconfig | ld-max-page-size module-plt32 | 5.0 | 1.6 | pass | 46.5 | 20.0 | fail (encap) | 9.5 | ",
		"| v2.6.31 | defconfig | - | 0.0 |  | skip: build of v2.6.31 failed: arch/x86/kernel/entry_64.S:1306: Error: .size expressio... | | ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\n---\n%s", want, got)
		}
	}
}
