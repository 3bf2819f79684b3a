package vm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExitKind classifies how a guest ended.
type ExitKind string

// How a guest can end.
const (
	// ExitClean: the guest ended itself (reboot or power-off).
	ExitClean ExitKind = "clean"
	// ExitPanic: the guest kernel panicked (pvpanic event or a "Kernel
	// panic" line on the console).
	ExitPanic ExitKind = "panic"
	// ExitTimeout: Config.Timeout or the context's deadline passed and the
	// guest was killed.
	ExitTimeout ExitKind = "timeout"
	// ExitHypervisorError: the hypervisor failed (QEMU exited non-zero, did
	// not start, or died from a signal kbisect did not send).
	ExitHypervisorError ExitKind = "hypervisor-error"
	// ExitKilled: the caller stopped the guest (Stop, Close, a cancelled
	// context, or the peer of a Pair failing).
	ExitKilled ExitKind = "killed"
)

// Sentinel errors that an *ExitError matches with errors.Is.
var (
	ErrPanic           = errors.New("kernel panic")
	ErrTimeout         = errors.New("timeout")
	ErrHypervisorError = errors.New("hypervisor error")
	ErrKilled          = errors.New("killed")
)

// Outcome is how a guest ended, with the evidence.
type Outcome struct {
	// Name is the guest's Config.Name.
	Name string
	Kind ExitKind
	// Reason is a short description: "guest rebooted", "Attempted to kill
	// init! exitcode=0x00000100", "timeout after 30s", "qemu exited with
	// status 1: ...".
	Reason string
	// ExitCode is the hypervisor process's exit status (-1 if signalled).
	ExitCode int
	// ConsoleTail is the last lines of the serial console.
	ConsoleTail string
	// Stderr is the tail of the hypervisor's standard error.
	Stderr string
	// Started and Ended bracket the hypervisor process's life.
	Started, Ended time.Time
}

// Err is nil for a clean exit and an *ExitError otherwise.
func (o *Outcome) Err() error {
	if o == nil || o.Kind == ExitClean {
		return nil
	}
	return &ExitError{Outcome: o}
}

// ExitError is a guest that did not end cleanly. Its message is one line;
// the console tail and stderr are in Outcome.
type ExitError struct {
	Outcome *Outcome
}

func (e *ExitError) Error() string {
	o := e.Outcome
	what := map[ExitKind]string{
		ExitPanic:           "kernel panic",
		ExitTimeout:         "timeout",
		ExitHypervisorError: "hypervisor error",
		ExitKilled:          "killed",
	}[o.Kind]
	if what == "" {
		what = string(o.Kind)
	}
	if o.Reason == "" || o.Reason == what {
		return fmt.Sprintf("guest %s: %s", o.Name, what)
	}
	return fmt.Sprintf("guest %s: %s: %s", o.Name, what, o.Reason)
}

// Is matches the sentinel of the outcome's kind.
func (e *ExitError) Is(target error) bool {
	switch e.Outcome.Kind {
	case ExitPanic:
		return target == ErrPanic
	case ExitTimeout:
		return target == ErrTimeout
	case ExitHypervisorError:
		return target == ErrHypervisorError
	case ExitKilled:
		return target == ErrKilled
	}
	return false
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
