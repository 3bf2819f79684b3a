package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/kbisect/kbisect/bisect"
)

// statusLine writes plain lines to w (what a log, nohup or CI keeps) and,
// when live (a terminal), one status line redrawn in place below them,
// cut to width columns so that it never wraps (a wrapped line cannot be
// redrawn in place).
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	width int
	shown string // the status line's text, "" for none
}

// stderrLine is the statusLine of stderr: live when stderr is a terminal
// and CI does not ask for plain logs.
func stderrLine() *statusLine {
	l := &statusLine{w: os.Stderr, live: os.Getenv("CI") == "" && term.IsTerminal(int(os.Stderr.Fd()))}
	if l.live {
		l.width, _, _ = term.GetSize(int(os.Stderr.Fd()))
	}
	return l
}

// Println writes s as a line of its own, above the status line.
func (l *statusLine) Println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	shown := l.shown
	l.setLocked("")
	fmt.Fprintln(l.w, s)
	l.setLocked(shown)
}

// Set shows s in the status line ("" clears it); nothing when not live.
func (l *statusLine) Set(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setLocked(s)
}

func (l *statusLine) setLocked(s string) {
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

// runProgress reports long work on stderr: one plain line per phase or
// run, on a terminal or not (work that takes hours must not be silent;
// --json keeps stdout for the JSON), and on a terminal a status line
// below them (a run's bytes verified so far).
type runProgress struct {
	line  *statusLine
	start time.Time
}

func newRunProgress() *runProgress { return &runProgress{line: stderrLine(), start: time.Now()} }

func (p *runProgress) stamp(msg string) string {
	return fmt.Sprintf("[%6.1fs] %s", time.Since(p.start).Seconds(), msg)
}

// Phase prints msg as a line of its own.
func (p *runProgress) Phase(msg string) { p.line.Println(p.stamp(msg)) }

// Status shows msg in the status line, on a terminal only.
func (p *runProgress) Status(msg string) { p.line.Set(p.stamp(msg)) }

// Close clears the status line.
func (p *runProgress) Close() { p.line.Set("") }

// lineWriter turns written lines into progress messages.
type lineWriter func(string)

func (w lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w(l)
	}
	return len(p), nil
}

// bisectProgress reports a bisection on w: one plain line per run that
// ends (what a log, nohup or CI keeps), and on a terminal also a live
// line below them, redrawn every second: the runs in flight and for how
// long, the best candidate, and the estimate of the runs and time left.
type bisectProgress struct {
	line *statusLine
	now  func() time.Time

	mu       sync.Mutex
	inflight map[int]inFlight
	last     bisect.Progress
	stop     chan struct{}
	done     sync.WaitGroup
}

type inFlight struct {
	commit bisect.Commit
	since  time.Time
}

// newBisectProgress starts the reporter on line, whose status line it
// redraws every second when live. Close stops it.
func newBisectProgress(line *statusLine) *bisectProgress {
	p := &bisectProgress{line: line, now: time.Now, inflight: make(map[int]inFlight), stop: make(chan struct{})}
	if line.live {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.line.Set(p.liveText())
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

// Event takes one of the bisection's progress events.
func (p *bisectProgress) Event(ev bisect.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Started {
		p.inflight[ev.Seq] = inFlight{ev.Commit, p.now()}
		p.line.Set(p.liveText())
		return
	}
	delete(p.inflight, ev.Seq)
	if ev.Finished != nil {
		return
	}
	if ev.Err == nil {
		p.last = ev
	}
	p.line.Println(fmt.Sprintf("%s %s", p.now().Format("15:04:05"), ev))
	p.line.Set(p.liveText())
}

// Close stops the live line and clears it.
func (p *bisectProgress) Close() {
	if p.line.live {
		close(p.stop)
		p.done.Wait()
	}
	p.line.Set("")
}

// liveText is the live line: "running #7 abc123 1m02s | best ... | ...".
func (p *bisectProgress) liveText() string {
	var parts []string
	seqs := make([]int, 0, len(p.inflight))
	for s := range p.inflight {
		seqs = append(seqs, s)
	}
	sort.Ints(seqs)
	var runs []string
	for _, s := range seqs {
		f := p.inflight[s]
		runs = append(runs, fmt.Sprintf("#%d %s %s", s, f.commit.Short(), p.now().Sub(f.since).Round(time.Second)))
	}
	if len(runs) > 0 {
		parts = append(parts, "running "+strings.Join(runs, ", "))
	}
	if l := p.last; l.Runs > 0 {
		parts = append(parts, fmt.Sprintf("best %s %.1f%%", l.Best.Short(), 100*l.BestP), fmt.Sprintf("%d runs, %d builds", l.Runs, l.Builds))
		if l.LeftRuns > 0 {
			parts = append(parts, fmt.Sprintf("about %d runs, %s left", l.LeftRuns, l.LeftTime.Round(time.Minute)))
		}
	}
	return strings.Join(parts, " | ")
}
