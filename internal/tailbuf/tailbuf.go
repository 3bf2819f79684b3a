// Package tailbuf keeps the end of a stream of output: the last lines of a
// command's log, of a console, of make's complaints.
package tailbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is an io.Writer that keeps the last Max bytes written to it (all
// of them when Max is 0). It is safe for concurrent use.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf []byte
}

// New returns a Buffer that keeps the last max bytes.
func New(max int) *Buffer { return &Buffer{Max: max} }

// Write implements io.Writer; it never fails.
func (t *Buffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	// Trim in batches: copying the tail on every write would be quadratic.
	if t.Max > 0 && len(t.buf) > 2*t.Max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.Max:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of the bytes kept.
func (t *Buffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.Max > 0 && len(b) > t.Max {
		b = b[len(b)-t.Max:]
	}
	return append([]byte(nil), b...)
}

// String returns the bytes kept.
func (t *Buffer) String() string { return string(t.Bytes()) }

// Lines returns the last n non-empty lines kept, trimmed, in order (the
// first may be cut short by the buffer's limit), with invalid UTF-8 dropped.
func (t *Buffer) Lines(n int) []string {
	b := bytes.ToValidUTF8(t.Bytes(), nil)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// LastLine returns the last non-empty line, cut to max bytes ("..." marks
// a cut).
func (t *Buffer) LastLine(max int) string {
	ls := t.Lines(1)
	if len(ls) == 0 {
		return ""
	}
	l := ls[0]
	if max > 0 && len(l) > max {
		l = l[:max] + "..."
	}
	return l
}
