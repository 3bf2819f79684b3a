package testcases

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestWriteMatrixMarkdown(t *testing.T) {
	cells := []MatrixCell{
		{Rev: "v3.14.5", Release: "3.14.5", Config: "tinyconfig", Hypervisor: "qemu", Fixups: []string{"ld-max-page-size/1", "module-plt32/1"}, BuildSeconds: 300, Verdict: Pass, Mbit: 46.5, BootSeconds: 1.6, Wire: "clean"},
		{Rev: "v3.14.5", Release: "3.14.5", Config: "tinyconfig", Hypervisor: "xen", BuildSeconds: 300, Verdict: Fail, Mbit: 9.5, BootSeconds: 20, Wire: "encap"},
		{Rev: "v2.6.31", Config: "defconfig", Hypervisor: "qemu", Verdict: Skip, Reason: "build of v2.6.31 failed: arch/x86/kernel/entry_64.S:1306: Error: .size expression | does not evaluate"},
		{Rev: "v4.19.78", Config: "tinyconfig", Hypervisor: "qemu", Verdict: Skip, Reason: "build of 7bed730c2778 failed: arch/x86/entry/thunk_64.o: warning: objtool: missing symbol table (log: /c/kbuild/failed/7bed730c2778-cfe0a2a6f84f.log)"},
		{Rev: "v9.9", Config: "tinyconfig", Hypervisor: "qemu", Verdict: Error, Reason: strings.Repeat("x", 200)},
	}
	var b strings.Builder
	WriteMatrixMarkdown(&b, cells, []string{"qemu", "xen"})
	got := b.String()
	for _, want := range []string{
		"| release | config | fixups | build min | qemu boot s | qemu verdict | qemu Mbit/s | xen boot s | xen verdict | xen Mbit/s | ",
		"| 3.14.5 | tinyconfig | ld-max-page-size module-plt32 | 5.0 | 1.6 | pass | 46.5 | 20.0 | fail (encap) | 9.5 | ",
		"| v2.6.31 | defconfig | - | 0.0 |  | skip: build of v2.6.31 failed: arch/x86/kernel/entry_64.S:1306: Error: .size expression / does not evaluate | | ",
		"| v4.19.78 | tinyconfig | - | 0.0 |  | skip: build of 7bed730c2778 failed: arch/x86/entry/thunk_64.o: warning: objtool: missing symbol table | | ",
		"| v9.9 | tinyconfig | - | 0.0 |  | error: " + strings.Repeat("x", 160) + "... | | ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\n---\n%s", want, got)
		}
	}
}

// TestMatrixLog: a new file starts empty; its cells are appended as
// added; opened again, it has them (a line that is not a cell passed
// over) and says which are done, then appends after them.
func TestMatrixLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cells.jsonl")
	a := MatrixCell{Rev: "v1", Config: "tinyconfig", Hypervisor: "qemu", Verdict: Pass}
	b := MatrixCell{Rev: "v2", Config: "tinyconfig", Hypervisor: "qemu", Verdict: Skip, Reason: "no build"}
	c := MatrixCell{Rev: "v2", Config: "tinyconfig", Hypervisor: "xen", Verdict: Fail}
	for _, tc := range []struct {
		name   string
		path   string
		before string // the file's text before OpenMatrixLog
		add    []MatrixCell
		cells  []MatrixCell
		done   []MatrixCell
		lines  int
	}{
		{"new", path, "", []MatrixCell{a}, []MatrixCell{a}, nil, 1},
		{"again", path, "not json\n", []MatrixCell{b}, []MatrixCell{a, b}, []MatrixCell{a}, 3},
		{"third", path, "", []MatrixCell{c}, []MatrixCell{a, b, c}, []MatrixCell{a, b}, 4},
		{"memory only", "", "", []MatrixCell{a}, []MatrixCell{a}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != "" {
				f, _ := os.OpenFile(tc.path, os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(tc.before)
				f.Close()
			}
			l, err := OpenMatrixLog(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []MatrixCell{a, b, c} {
				want := slices.ContainsFunc(tc.done, func(d MatrixCell) bool { return d.Rev == x.Rev && d.Hypervisor == x.Hypervisor })
				if got := l.Done(x.Rev, x.Config, x.Hypervisor); got != want {
					t.Errorf("Done(%s %s) = %v, want %v", x.Rev, x.Hypervisor, got, want)
				}
			}
			for _, x := range tc.add {
				if err := l.Add(x); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l.Cells, tc.cells) {
				t.Errorf("cells %+v, want %+v", l.Cells, tc.cells)
			}
			if tc.path != "" {
				data, _ := os.ReadFile(tc.path)
				if n := strings.Count(string(data), "\n"); n != tc.lines {
					t.Errorf("%d lines in the file, want %d:\n%s", n, tc.lines, data)
				}
			}
		})
	}
	if _, err := OpenMatrixLog(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("OpenMatrixLog in a missing directory: no error")
	}
}
