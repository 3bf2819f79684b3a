package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// backend starts machines on one hypervisor. The QEMU backend is the only
// one so far; a Xen backend (xl create, console through xl console) would
// implement the same two interfaces and register itself in backends.
type backend interface {
	// start launches the machine described by cfg (defaults filled in) and
	// returns once it runs. h receives hypervisor events.
	start(ctx context.Context, cfg *Config, h hooks) (machine, error)
}

// hooks are callbacks from a machine to its Guest.
type hooks struct {
	// event reports a hypervisor event; it must not block.
	event func(machineEvent)
}

// machineEvent is a hypervisor event the Guest cares about.
type machineEvent struct {
	// kind is "panic" (the guest's pvpanic device fired) or "shutdown".
	kind string
	// reason is the hypervisor's reason for a shutdown ("guest-reset",
	// "guest-shutdown", "host-qmp-quit", ...).
	reason string
}

// machine is one running guest as a backend sees it.
type machine interface {
	// consoleConn is the host end of the serial console; reads end at EOF
	// when the machine is gone.
	consoleConn() io.ReadWriteCloser
	// agentConn is the host end of the agent channel.
	agentConn() io.ReadCloser
	// started is when the hypervisor process was launched.
	started() time.Time
	// wait blocks until the hypervisor process has exited.
	wait() exitStatus
	// quit asks the hypervisor to stop the guest now; it does not wait.
	quit()
	// kill ends the hypervisor at once.
	kill()
	// status asks the hypervisor for the run state.
	status(ctx context.Context) (string, error)
	// cleanup releases what the machine holds (monitor, temp dirs); called
	// once after wait returned.
	cleanup() error
	// pid is the hypervisor process, for tests.
	pid() int
	// cmdline is the hypervisor command line.
	cmdline() []string
}

// exitStatus is how the hypervisor process ended.
type exitStatus struct {
	code     int // -1 when signalled
	signaled bool
	err      error
	stderr   string
}

var backends = map[Hypervisor]backend{
	QEMU: qemuBackend{},
}

// Guest is one running virtual machine. Its console goes to
// Config.ConsoleLog, the agent's lines arrive on Lines, and Wait returns how
// it ended. Close must be called.
type Guest struct {
	cfg Config
	m   machine

	lines   chan string
	queue   *lineQueue
	console *consoleSink

	done    chan struct{}
	exited  chan struct{} // closed when the hypervisor process has exited
	outcome *Outcome

	stopOnce sync.Once
	stopCh   chan struct{}
	abandon  chan struct{}
	closeMu  sync.Mutex
	closed   bool

	// ended is closed once the guest has ended itself (see guestEnded);
	// endedHow says how ("guest rebooted", ...) and by what evidence.
	ended    chan struct{}
	endOnce  sync.Once
	endedHow string

	mu           sync.Mutex
	stopKind     ExitKind // set when we stop the guest
	stopReason   string
	panicked     bool
	shutdownWhy  string
	readersDone  sync.WaitGroup
	cleanupError error
}

// Start boots a guest. The context bounds the guest's whole life: when it
// ends the guest is stopped (ExitTimeout for a deadline, ExitKilled for a
// cancellation). Start returns once the hypervisor runs; a configuration
// the hypervisor rejects is an error here.
//
// The hypervisor gets SIGKILL if the process that started it dies (Linux
// ties this to the starting thread: do not call Start from a goroutine that
// locked its OS thread and then exits without unlocking it).
func Start(ctx context.Context, cfg Config) (*Guest, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	be, ok := backends[cfg.Hypervisor]
	if !ok {
		return nil, fmt.Errorf("guest %s: hypervisor %q is not supported by Start: use %q (Xen guests start in pairs: StartXenPair)", cfg.Name, cfg.Hypervisor, QEMU)
	}
	return startGuest(ctx, cfg, be.start)
}

// startGuest runs a guest on the machine launch returns; cfg has its
// defaults filled in.
func startGuest(ctx context.Context, cfg Config, launch func(context.Context, *Config, hooks) (machine, error)) (*Guest, error) {
	var err error
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("guest %s: %w", cfg.Name, err)
	}
	var logFile *os.File
	if cfg.ConsoleLog != "" {
		logFile, err = os.Create(cfg.ConsoleLog)
		if err != nil {
			return nil, fmt.Errorf("guest %s: console log: %w", cfg.Name, err)
		}
	}
	g := &Guest{
		cfg:     cfg,
		lines:   make(chan string),
		queue:   newLineQueue(),
		console: newConsoleSink(logFile, cfg.ConsoleOutput),
		ended:   make(chan struct{}),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		stopCh:  make(chan struct{}),
		abandon: make(chan struct{}),
	}
	m, err := launch(ctx, &g.cfg, hooks{event: g.onEvent})
	if err != nil {
		if logFile != nil {
			// Leave no empty log behind a guest that never ran.
			logFile.Close()
			os.Remove(cfg.ConsoleLog)
		}
		return nil, err
	}
	g.m = m
	g.console.onEnd = g.guestEnded
	g.readersDone.Add(2)
	go g.readConsole()
	go g.readAgent()
	go g.queue.forward(g.lines, g.abandon)
	if cfg.ConsoleInput != nil {
		go io.Copy(m.consoleConn(), cfg.ConsoleInput)
	}
	go g.supervise(ctx)
	return g, nil
}

// Name is the guest's Config.Name.
func (g *Guest) Name() string { return g.cfg.Name }

// Lines delivers the lines the guest writes on its agent channel (the
// second serial port, ttyS1), without line endings, in order. Nothing is
// dropped while the guest runs; the channel is closed after the guest has
// ended and every line was delivered (or the Guest was closed).
func (g *Guest) Lines() <-chan string { return g.lines }

// Started is when the hypervisor process was launched, the zero point of
// boot-time measurements.
func (g *Guest) Started() time.Time { return g.m.started() }

// Cmdline is the hypervisor command line, for logs and bug reports.
func (g *Guest) Cmdline() []string { return g.m.cmdline() }

// Done is closed when the guest has ended and its Outcome is known.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Wait blocks until the guest ends and returns how.
func (g *Guest) Wait() *Outcome {
	<-g.done
	return g.outcome
}

// ConsoleTail returns the last n lines of the console so far.
func (g *Guest) ConsoleTail(n int) string { return g.console.tail(n) }

// Status asks the hypervisor for the guest's run state ("running",
// "paused", "shutdown", "guest-panicked", ...); "ended" once it is gone.
func (g *Guest) Status(ctx context.Context) (string, error) {
	select {
	case <-g.done:
		return "ended", nil
	default:
	}
	s, err := g.m.status(ctx)
	if err != nil {
		// QEMU may have exited between the check above and the query
		// (a guest that powers off), taking its QMP socket with it.
		// exited says so at once; done waits for the console readers.
		select {
		case <-g.exited:
			return "ended", nil
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
		return "", fmt.Errorf("guest %s: status: %w", g.cfg.Name, err)
	}
	return s, nil
}

// Stop ends the guest gracefully (the hypervisor's quit, SIGKILL after
// Config.StopGrace) and waits until it has ended or ctx is done. The
// outcome is ExitKilled unless the guest had already ended.
func (g *Guest) Stop(ctx context.Context) error {
	g.requestStop(ExitKilled, "stopped")
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("guest %s: stop: %w", g.cfg.Name, ctx.Err())
	}
}

// Close stops the guest if it still runs, waits for it, and releases
// everything it holds (hypervisor process, sockets, temporary directories).
func (g *Guest) Close() error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	g.requestStop(ExitKilled, "closed")
	<-g.done
	close(g.abandon)
	return g.cleanupError
}

// requestStop stops the guest with the given outcome kind and reason unless it
// has already ended or a stop is under way.
func (g *Guest) requestStop(kind ExitKind, reason string) {
	g.mu.Lock()
	if g.stopKind == "" {
		g.stopKind, g.stopReason = kind, reason
	}
	g.mu.Unlock()
	g.stopOnce.Do(func() { close(g.stopCh) })
}

func (g *Guest) onEvent(ev machineEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch ev.kind {
	case "panic":
		g.panicked = true
	case "shutdown":
		if g.shutdownWhy == "" {
			g.shutdownWhy = ev.reason
		}
		if how, ok := shutdownReasons[ev.reason]; ok {
			g.guestEnded(how, "QEMU's SHUTDOWN event, "+ev.reason)
		}
	}
}

// shutdownReasons are the hypervisor's reasons for a shutdown that the
// guest asked for, and what they mean.
var shutdownReasons = map[string]string{
	"guest-reset":    "guest rebooted",
	"guest-shutdown": "guest powered off",
}

// guestEnded records that the guest has ended itself (how, and the evidence
// for it) and starts supervise's wait for the hypervisor to exit. The first
// call counts. It must not block: the console sink and the QMP reader call
// it.
func (g *Guest) guestEnded(how, evidence string) {
	g.endOnce.Do(func() {
		g.endedHow = fmt.Sprintf("%s (%s)", how, evidence)
		close(g.ended)
	})
}

// supervise waits for the machine to end, enforcing the timeout, the
// context and stop requests, then records the outcome.
func (g *Guest) supervise(ctx context.Context) {
	exited := make(chan exitStatus, 1)
	go func() { exited <- g.m.wait() }()
	var timeout <-chan time.Time
	if g.cfg.Timeout > 0 {
		t := time.NewTimer(g.cfg.Timeout - time.Since(g.m.started()))
		defer t.Stop()
		timeout = t.C
	}
	// Once the guest has ended itself, the hypervisor has ExitGrace to
	// exit. QEMU under -no-reboot exits within milliseconds of the guest's
	// reset, but once in about a hundred boots on a loaded machine it
	// stayed up (and ignored QMP quit): without this the run would wait
	// for its whole timeout and end as one, an error for a guest that had
	// finished its work.
	ended := g.ended
	var exitGrace <-chan time.Time
	var st exitStatus
	stopping := false
	for done := false; !done; {
		select {
		case st = <-exited:
			close(g.exited)
			done = true
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				g.requestStop(ExitTimeout, "context deadline exceeded")
			} else {
				g.requestStop(ExitKilled, "context cancelled")
			}
			ctx = context.Background()
		case <-timeout:
			g.requestStop(ExitTimeout, fmt.Sprintf("timeout after %v", g.cfg.Timeout))
			timeout = nil
		case <-ended:
			ended = nil
			t := time.NewTimer(g.cfg.ExitGrace)
			defer t.Stop()
			exitGrace = t.C
		case <-exitGrace:
			exitGrace = nil
			g.cfg.logf("guest %s: %s, but the hypervisor has not exited %v later: stopping it", g.cfg.Name, g.endedHow, g.cfg.ExitGrace)
			g.requestStop(ExitClean, fmt.Sprintf("%s; the hypervisor did not exit within %v and was stopped", g.endedHow, g.cfg.ExitGrace))
		case <-g.stopCh:
			if !stopping {
				stopping = true
				go g.stopMachine()
			}
		}
	}
	// The console and agent streams end when the hypervisor closes its
	// ends; bound the wait in case a descendant kept them open.
	readers := make(chan struct{})
	go func() { g.readersDone.Wait(); close(readers) }()
	select {
	case <-readers:
	case <-time.After(5 * time.Second):
		g.m.consoleConn().Close()
		g.m.agentConn().Close()
		<-readers
	}
	g.queue.close()
	g.cleanupError = g.m.cleanup()
	g.console.close()
	g.outcome = g.classify(st)
	close(g.done)
}

// stopMachine asks the machine to quit and kills it after the grace period.
func (g *Guest) stopMachine() {
	g.m.quit()
	t := time.NewTimer(g.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-g.exited:
	case <-t.C:
		g.cfg.logf("guest %s: did not stop within %v, killing it", g.cfg.Name, g.cfg.StopGrace)
		g.m.kill()
	}
}

func (g *Guest) classify(st exitStatus) *Outcome {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := &Outcome{
		Name:        g.cfg.Name,
		ExitCode:    st.code,
		ConsoleTail: g.console.outcomeTail(40),
		Stderr:      st.stderr,
		Started:     g.m.started(),
		Ended:       time.Now(),
	}
	panicLine := g.console.panicLine()
	switch {
	case g.panicked || panicLine != "":
		o.Kind = ExitPanic
		o.Reason = panicLine
		if o.Reason == "" {
			o.Reason = "the guest's pvpanic device fired"
		}
	case g.stopKind != "":
		o.Kind, o.Reason = g.stopKind, g.stopReason
	case st.err != nil && !st.signaled && st.code == -1:
		o.Kind = ExitHypervisorError
		o.Reason = st.err.Error()
	case st.signaled:
		o.Kind = ExitHypervisorError
		o.Reason = fmt.Sprintf("qemu killed: %v", st.err)
	case st.code != 0:
		o.Kind = ExitHypervisorError
		o.Reason = fmt.Sprintf("exited with status %d", st.code)
		if st.stderr != "" {
			o.Reason += ": " + lastLine(st.stderr)
		}
	default:
		o.Kind, o.Reason = ExitClean, g.shutdownWhy
		if how, ok := shutdownReasons[g.shutdownWhy]; ok {
			o.Reason = how
		} else if o.Reason == "" {
			o.Reason = "hypervisor exited"
		}
	}
	return o
}

func (g *Guest) readConsole() {
	defer g.readersDone.Done()
	buf := make([]byte, 32<<10)
	r := g.m.consoleConn()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			g.console.write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (g *Guest) readAgent() {
	defer g.readersDone.Done()
	br := bufio.NewReaderSize(g.m.agentConn(), 64<<10)
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line != "" || err == nil {
			g.queue.push(line)
		}
		if err != nil {
			return
		}
	}
}

// lineQueue is an unbounded FIFO of lines, so a slow consumer never stalls
// the guest's serial port.
type lineQueue struct {
	mu     sync.Mutex
	items  []string
	closed bool
	notify chan struct{}
}

func newLineQueue() *lineQueue { return &lineQueue{notify: make(chan struct{}, 1)} }

func (q *lineQueue) push(s string) {
	q.mu.Lock()
	q.items = append(q.items, s)
	q.mu.Unlock()
	q.wake()
}

func (q *lineQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *lineQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// forward sends the queued lines to out until the queue is closed and
// empty, or abandon is closed; then it closes out.
func (q *lineQueue) forward(out chan<- string, abandon <-chan struct{}) {
	defer close(out)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			closed := q.closed
			q.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-q.notify:
			case <-abandon:
				return
			}
			continue
		}
		s := q.items[0]
		q.items = q.items[1:]
		q.mu.Unlock()
		select {
		case out <- s:
		case <-abandon:
			return
		}
	}
}

// panicRE matches the kernel's panic line (all versions since 2.6).
var panicRE = regexp.MustCompile(`Kernel panic - not syncing:\s*(.*)`)

// endRE matches the kernel's last line before it resets or powers off the
// machine (kernel_restart, kernel_power_off, kernel_halt and x86's
// native_machine_restart: "reboot: Restarting system" in 3.14 and 6.1,
// "Restarting system." in 2.6.32), after the optional timestamp.
var endRE = regexp.MustCompile(`^(?:\[\s*\d+\.\d+\]\s*)?(?:reboot: )?(Restarting system|machine restart|Power down|System halted)\b`)

// endHow is what each of endRE's lines says of the guest.
var endHow = map[string]string{
	"Restarting system": "guest rebooted",
	"machine restart":   "guest rebooted",
	"Power down":        "guest powered off",
	"System halted":     "guest halted",
}

// consoleSink receives the console: it writes the log file (with CRLF
// turned into LF), tees to an optional writer, keeps a tail and spots the
// panic line and the kernel's last line (calling onEnd, which must not
// block).
type consoleSink struct {
	mu      sync.Mutex
	file    *os.File
	tee     io.Writer
	partial []byte
	lines   []string // ring of the last maxTail lines
	total   int      // lines seen
	panic   string
	panicNo int // line number of the panic line
	pendCR  bool
	onEnd   func(how, evidence string)
}

const maxTail = 200

func newConsoleSink(f *os.File, tee io.Writer) *consoleSink {
	return &consoleSink{file: f, tee: tee}
}

func (c *consoleSink) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tee != nil {
		c.tee.Write(p)
	}
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if c.pendCR {
			c.pendCR = false
			if b != '\n' {
				out = append(out, '\r')
				c.partial = append(c.partial, '\r')
			}
		}
		if b == '\r' {
			c.pendCR = true
			continue
		}
		out = append(out, b)
		if b == '\n' {
			c.endLine()
			continue
		}
		c.partial = append(c.partial, b)
		if len(c.partial) > 4096 {
			c.endLine()
		}
	}
	if c.file != nil {
		c.file.Write(out)
	}
}

func (c *consoleSink) endLine() {
	line := string(c.partial)
	c.partial = c.partial[:0]
	if c.panic == "" {
		if m := panicRE.FindStringSubmatch(line); m != nil {
			c.panic = strings.TrimSpace(m[1])
			if c.panic == "" {
				c.panic = "Kernel panic"
			}
			c.panicNo = c.total
		}
	}
	if c.onEnd != nil {
		if m := endRE.FindStringSubmatch(line); m != nil {
			c.onEnd(endHow[m[1]], fmt.Sprintf("the console's %q", strings.TrimSpace(line)))
		}
	}
	c.total++
	c.lines = append(c.lines, line)
	if len(c.lines) > 2*maxTail {
		c.lines = append(c.lines[:0], c.lines[len(c.lines)-maxTail:]...)
	}
}

func (c *consoleSink) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if len(c.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(c.partial))
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// outcomeTail is the console tail for an Outcome: the last n lines, or more
// so that a panic's first lines (the message and the oops before it) are
// included.
func (c *consoleSink) outcomeTail(n int) string {
	c.mu.Lock()
	if c.panic != "" {
		if need := c.total - c.panicNo + 10; need > n {
			n = min(need, maxTail)
		}
	}
	c.mu.Unlock()
	return c.tail(n)
}

func (c *consoleSink) panicLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.panic
}

func (c *consoleSink) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.partial) > 0 {
		c.endLine()
	}
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
}
