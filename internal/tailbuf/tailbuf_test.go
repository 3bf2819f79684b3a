package tailbuf

import (
	"fmt"
	"strings"
	"testing"
)

func TestBuffer(t *testing.T) {
	b := New(64)
	for i := range 100 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if s := b.String(); len(s) != 64 || !strings.HasSuffix(s, "line 99\n") {
		t.Errorf("kept %q", s)
	}
	if got := b.Lines(2); len(got) != 2 || got[0] != "line 98" || got[1] != "line 99" {
		t.Errorf("Lines(2) = %q", got)
	}
	fmt.Fprintf(b, "%s\n\n", strings.Repeat("x", 30))
	if l := b.LastLine(10); l != "xxxxxxxxxx..." {
		t.Errorf("LastLine(10) = %q", l)
	}
	if l := New(0).LastLine(10); l != "" {
		t.Errorf("empty buffer: %q", l)
	}
	all := &Buffer{}
	fmt.Fprint(all, strings.Repeat("y", 1000))
	if len(all.String()) != 1000 {
		t.Errorf("Max 0 kept %d bytes, want all", len(all.String()))
	}
}
