// Package statusline reports long work on a terminal or in a log: plain
// lines that a log, nohup or CI keeps, and, on a terminal, one status line
// redrawn in place below them.
package statusline

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Line writes plain lines to its writer and, when live (a terminal), one
// status line redrawn in place below them, cut to the terminal's width so
// that it never wraps (a wrapped line cannot be redrawn in place). It is
// safe for concurrent use.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	width int
	shown string // the status line's text, "" for none
}

// New returns a Line on w: live or not, width columns wide (0: no limit).
func New(w io.Writer, live bool, width int) *Line {
	return &Line{w: w, live: live, width: width}
}

// Stderr returns the Line of stderr: live when stderr is a terminal and CI
// does not ask for plain logs.
func Stderr() *Line {
	l := &Line{w: os.Stderr, live: os.Getenv("CI") == "" && term.IsTerminal(int(os.Stderr.Fd()))}
	if l.live {
		l.width, _, _ = term.GetSize(int(os.Stderr.Fd()))
	}
	return l
}

// Live says whether the status line is shown (on a terminal).
func (l *Line) Live() bool { return l.live }

// Println writes s as a line of its own, above the status line.
func (l *Line) Println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	shown := l.shown
	l.setLocked("")
	fmt.Fprintln(l.w, s)
	l.setLocked(shown)
}

// Set shows s in the status line ("" clears it); nothing when not live.
func (l *Line) Set(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setLocked(s)
}

func (l *Line) setLocked(s string) {
	if !l.live {
		return
	}
	if r := []rune(s); l.width > 1 && len(r) > l.width-1 {
		s = string(r[:l.width-1])
	}
	if s != "" || l.shown != "" {
		io.WriteString(l.w, "\r\033[K"+s)
	}
	l.shown = s
}

// Log stamps what it reports with the time since it started: phases as
// lines of their own, on a terminal or not (work that takes hours must not
// be silent), and a status (a run's bytes verified so far) in the status
// line, on a terminal only.
type Log struct {
	line  *Line
	start time.Time
}

// NewLog returns a Log on line, started now.
func NewLog(line *Line) *Log { return &Log{line: line, start: time.Now()} }

func (p *Log) stamp(msg string) string {
	return fmt.Sprintf("[%6.1fs] %s", time.Since(p.start).Seconds(), msg)
}

// Live says whether the status is shown (on a terminal).
func (p *Log) Live() bool { return p.line.Live() }

// Phase prints msg as a line of its own.
func (p *Log) Phase(msg string) { p.line.Println(p.stamp(msg)) }

// Status shows msg in the status line, on a terminal only.
func (p *Log) Status(msg string) { p.line.Set(p.stamp(msg)) }

// Close clears the status line.
func (p *Log) Close() { p.line.Set("") }

// Writer is an io.Writer that hands each line written to it to the
// function (a Log's Phase): a build log or a validation's lines as phases.
type Writer func(string)

// Write calls w once per line of p.
func (w Writer) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w(l)
	}
	return len(p), nil
}
