package bisect

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kbisect/kbisect/internal/statusline"
)

// Progress reports one event of a running bisection.
type Progress struct {
	Phase   string // "endpoint", "search", "revert"
	Seq     int
	Commit  Commit
	Pos, N  int
	Verdict Verdict
	// FailSig is a failure's signature, and Other says it is not the
	// one bisected: the run counted as neither pass nor fail.
	FailSig string
	Other   bool
	Elapsed time.Duration
	Err     error
	Best    Commit
	BestP   float64
	Runs    int
	Builds  int
	// LeftRuns and LeftTime estimate what the search still needs (0:
	// no estimate yet); see Job.estimate.
	LeftRuns int
	LeftTime time.Duration
	Finished *Result
	// Started says the run Seq has just begun on Commit, given Budget;
	// the other events are of runs that ended.
	Started bool
	Budget  time.Duration
}

// String is the event as one line of progress.
func (p Progress) String() string {
	if p.Err != nil {
		return fmt.Sprintf("[%d] %s %s: error (retried): %v", p.Seq, p.Phase, p.Commit.Short(), p.Err)
	}
	if p.Started {
		return fmt.Sprintf("[%d] %-8s %s started (budget %s)", p.Seq, p.Phase, p.Commit.Short(), p.Budget)
	}
	v := string(p.Verdict)
	if p.Other {
		v = "fail of another signature (not counted): " + p.FailSig
	}
	eta := ""
	if p.LeftRuns > 0 {
		eta = fmt.Sprintf(" | about %d runs, %s left", p.LeftRuns, p.LeftTime.Round(time.Minute))
	}
	return fmt.Sprintf("[%d] %-8s %s %-4s %6.1fs | best %s %5.1f%% | %d runs, %d builds%s",
		p.Seq, p.Phase, p.Commit.Short(), v, p.Elapsed.Seconds(), p.Best.Short(), 100*p.BestP, p.Runs, p.Builds, eta)
}

// ProgressLine shows a bisection's progress on a statusline.Line: one
// plain line per run that ends (what a log, nohup or CI keeps), and when
// the line is live (a terminal) also a status line below them, redrawn
// every second: the runs in flight and for how long, the best candidate,
// and the estimate of the runs and time left.
type ProgressLine struct {
	line *statusline.Line
	now  func() time.Time

	mu       sync.Mutex
	inflight map[int]inFlight
	last     Progress
	stop     chan struct{}
	done     sync.WaitGroup
}

type inFlight struct {
	commit Commit
	since  time.Time
}

// NewProgressLine starts showing progress on line, whose status line it
// redraws every second when live. Pass its Event to Job.Run; Close stops
// it.
func NewProgressLine(line *statusline.Line) *ProgressLine {
	p := &ProgressLine{line: line, now: time.Now, inflight: make(map[int]inFlight), stop: make(chan struct{})}
	if line.Live() {
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
func (p *ProgressLine) Event(ev Progress) {
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

// Close stops the status line and clears it.
func (p *ProgressLine) Close() {
	if p.line.Live() {
		close(p.stop)
		p.done.Wait()
	}
	p.line.Set("")
}

// liveText is the status line: "running #7 abc123 1m02s | best ... | ...".
func (p *ProgressLine) liveText() string {
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
