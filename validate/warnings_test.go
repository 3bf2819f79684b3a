package validate

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Lines as a kernel build with O= writes them: kbuild's quiet CC lines and
// gcc's coloured diagnostics with paths into the slot's checkout.
const baseLog = "  CC      net/ipv4/esp4.o\n" +
	"  CC      net/ipv4/udp.o\n" +
	"../src/net/ipv4/udp.c:10:5: \x1b[01;35m\x1b[Kwarning: \x1b[m\x1b[Kunused variable 'x' [-Wunused-variable]\n" +
	".config:1309:warning: override: UNWINDER_GUESS changes choice state\n"

const patchedLog = "  CC      net/ipv4/esp4.o\n" +
	"/root/.cache/kbisect/kbuild/linux-1234/slot0/src/net/ipv4/esp4.c:1:2: error: #error kbisect\n" +
	"../src/net/ipv4/esp4.c:1300:12: warning: 'kbisect_unused' defined but not used [-Wunused-function]\n" +
	"../src/net/ipv4/udp.c:12:5: warning: unused variable 'x' [-Wunused-variable]\n" +
	"../src/net/ipv4/udp.c:40:1: warning: control reaches end of non-void function [-Wreturn-type]\n" +
	"  CC      net/core/dev.o\n" +
	"../src/net/core/dev.c:7:1: warning: something [-Wfoo]\n"

func TestNewWarnings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) *buildLog {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		bl, err := parseBuildLog(p)
		if err != nil {
			t.Fatal(err)
		}
		return bl
	}
	base, patched := write("base.log", baseLog), write("patched.log", patchedLog)
	cases := []struct {
		name       string
		files      []string
		want       []Warning
		uncompared []string
	}{
		{"new function warning", []string{"net/ipv4/esp4.c"},
			[]Warning{{File: "net/ipv4/esp4.c", Line: 1300, Message: "'kbisect_unused' defined but not used [-Wunused-function]"}}, nil},
		{"old warning moved, new one added", []string{"net/ipv4/udp.c"},
			[]Warning{{File: "net/ipv4/udp.c", Line: 40, Message: "control reaches end of non-void function [-Wreturn-type]"}}, nil},
		{"file the base log did not compile", []string{"net/core/dev.c"},
			[]Warning{{File: "net/core/dev.c", Line: 7, Message: "something [-Wfoo]"}}, []string{"net/core/dev.c"}},
		{"untouched files are not reported", []string{"README"}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, unc := newWarnings(base, patched, tc.files)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(unc, tc.uncompared) {
				t.Errorf("got %v (uncompared %v), want %v (%v)", got, unc, tc.want, tc.uncompared)
			}
		})
	}
	if got, want := cleanLine("/root/.cache/kbisect/kbuild/linux-1234/slot0/src/net/ipv4/esp4.c:1:2: \x1b[01;31merror:\x1b[m #error kbisect"), "net/ipv4/esp4.c:1:2: error: #error kbisect"; got != want {
		t.Errorf("cleanLine: %q, want %q", got, want)
	}
}
