package statusline

import (
	"strings"
	"testing"
)

// TestLine: plain lines everywhere; the status line only when live, cleared
// before each plain line and drawn again below it, cut to one column less
// than the width (counted in runes), and never cleared when nothing shows.
func TestLine(t *testing.T) {
	type op struct {
		println bool
		s       string
	}
	for _, tc := range []struct {
		name  string
		live  bool
		width int
		ops   []op
		want  string
	}{
		{"piped", false, 0, []op{{false, "status"}, {true, "a"}, {false, ""}, {true, "b"}}, "a\nb\n"},
		{"clear with nothing shown", true, 0, []op{{false, ""}, {true, "a"}, {false, ""}}, "a\n"},
		{"live", true, 0, []op{{false, "st"}, {true, "a"}, {false, "st2"}, {false, ""}},
			"\r\033[Kst\r\033[Ka\n\r\033[Kst\r\033[Kst2\r\033[K"},
		{"cut to width", true, 6, []op{{false, "0123456789"}}, "\r\033[K01234"},
		{"cut in runes", true, 4, []op{{false, "äöüß"}}, "\r\033[Käöü"},
		{"no width, no cut", true, 0, []op{{false, "0123456789"}}, "\r\033[K0123456789"},
		{"plain lines are not cut", true, 4, []op{{true, "0123456789"}}, "0123456789\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			l := New(&out, tc.live, tc.width)
			if l.Live() != tc.live {
				t.Errorf("Live() = %v", l.Live())
			}
			for _, o := range tc.ops {
				if o.println {
					l.Println(o.s)
				} else {
					l.Set(o.s)
				}
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLog: a run's phases are lines of their own everywhere; its status
// (bytes verified) is a line redrawn in place on a terminal only, cleared
// for each phase line and drawn again below it, and cleared at the end.
func TestLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		live bool
		want string
	}{
		{"piped", false, "[0.0s] booting\n[0.0s] kbuild: done\n"},
		// A phase line goes above the status line, which is drawn again.
		{"terminal", true, "[0.0s] booting\n\r\033[K[0.0s] 1.0 MiB verified\r\033[K[0.0s] kbuild: done\n\r\033[K[0.0s] 1.0 MiB verified\r\033[K[0.0s] 2.0 MiB verified\r\033[K"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			p := NewLog(New(&out, tc.live, 0))
			if p.Live() != tc.live {
				t.Errorf("Live() = %v", p.Live())
			}
			p.Phase("booting")
			p.Status("1.0 MiB verified")
			Writer(p.Phase).Write([]byte("kbuild: done\n"))
			p.Status("2.0 MiB verified")
			p.Close()
			got := strings.NewReplacer("[   0.0s]", "[0.0s]").Replace(out.String())
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWriter: one call per line written, the last newline optional, the
// whole write counted.
func TestWriter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"one\n", []string{"one"}},
		{"one", []string{"one"}},
		{"one\ntwo\n", []string{"one", "two"}},
		{"one\n\nthree\n\n", []string{"one", "", "three"}},
	} {
		var got []string
		n, err := Writer(func(s string) { got = append(got, s) }).Write([]byte(tc.in))
		if err != nil || n != len(tc.in) {
			t.Errorf("%q: wrote %d, %v", tc.in, n, err)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: lines %q, want %q", tc.in, got, tc.want)
		}
	}
}
