package xenctl

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Line
		ok   bool
	}{
		{"KBXEN sender C [    1.0] Linux version 6.1", Line{"sender", KindConsole, "[    1.0] Linux version 6.1"}, true},
		{"\rKBXEN receiver X exit 0: Domain 1 has shut down\r\n", Line{"receiver", KindExit, "exit 0: Domain 1 has shut down"}, true},
		{"(XEN) noise KBXEN - D ", Line{"-", KindDone, ""}, true},
		{"KBXEN - R", Line{"-", KindReady, ""}, true},
		{"KBXEN sender", Line{}, false},
		{"[    0.1] Linux version", Line{}, false},
	}
	for _, c := range cases {
		got, ok := Parse(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, l := range []Line{
		{"sender", KindConsole, "KBISECT-EVENT {\"type\":\"ready\"}"},
		{"", KindLog, "load module x: no such file"},
		{"receiver", KindStarted, "2"},
	} {
		got, ok := Parse(l.Format())
		want := l
		if want.Guest == "" {
			want.Guest = Controller
		}
		if !ok || got != want {
			t.Errorf("Parse(Format(%+v)) = %+v, %v", l, got, ok)
		}
	}
}
