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

// stderrIsTerminal says whether progress may redraw a line: stderr is a
// terminal and CI does not ask for plain logs.
func stderrIsTerminal() bool {
	return os.Getenv("CI") == "" && term.IsTerminal(int(os.Stderr.Fd()))
}

// runProgress reports long work on stderr: one plain line per phase or
// run, on a terminal or not (a log, nohup, CI: work that takes hours must
// not be silent; --json keeps stdout for the JSON), and on a terminal a
// status line redrawn in place below them (a run's bytes verified so far).
type runProgress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	live  bool
	drawn bool
}

func newRunProgress() *runProgress {
	return &runProgress{w: os.Stderr, start: time.Now(), live: stderrIsTerminal()}
}

// Phase prints msg as a line of its own.
func (p *runProgress) Phase(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), msg)
}

// Status shows msg in the status line, on a terminal only.
func (p *runProgress) Status(msg string) {
	if !p.live {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r\033[K[%6.1fs] %s", time.Since(p.start).Seconds(), msg)
	p.drawn = true
}

// Close clears the status line.
func (p *runProgress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *runProgress) clear() {
	if p.drawn {
		io.WriteString(p.w, "\r\033[K")
		p.drawn = false
	}
}

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
	w     io.Writer
	live  bool
	width int
	now   func() time.Time

	mu       sync.Mutex
	inflight map[int]inFlight
	last     bisect.Progress
	drawn    bool
	stop     chan struct{}
	done     sync.WaitGroup
}

type inFlight struct {
	commit bisect.Commit
	since  time.Time
}

// newBisectProgress starts the reporter; live redraws the status line
// (stderr is a terminal of width columns). Close stops it.
func newBisectProgress(w io.Writer, live bool, width int) *bisectProgress {
	p := &bisectProgress{w: w, live: live, width: width, now: time.Now, inflight: make(map[int]inFlight), stop: make(chan struct{})}
	if live {
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
					p.redraw()
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
		p.redraw()
		return
	}
	delete(p.inflight, ev.Seq)
	if ev.Finished != nil {
		return
	}
	if ev.Err == nil {
		p.last = ev
	}
	p.clear()
	fmt.Fprintf(p.w, "%s %s\n", p.now().Format("15:04:05"), ev)
	p.redraw()
}

// Close stops the live line and clears it.
func (p *bisectProgress) Close() {
	if p.live {
		close(p.stop)
		p.done.Wait()
	}
	p.mu.Lock()
	p.clear()
	p.mu.Unlock()
}

func (p *bisectProgress) clear() {
	if p.drawn {
		io.WriteString(p.w, "\r\033[K")
		p.drawn = false
	}
}

// redraw writes the live line, cut to the terminal's width so that it
// never wraps (a wrapped line cannot be redrawn in place).
func (p *bisectProgress) redraw() {
	if !p.live {
		return
	}
	line := p.liveText()
	if r := []rune(line); p.width > 1 && len(r) > p.width-1 {
		line = string(r[:p.width-1])
	}
	io.WriteString(p.w, "\r\033[K"+line)
	p.drawn = true
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
