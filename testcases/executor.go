package testcases

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/kbisect/kbisect/vm"
)

// Executor runs one test on a pair of kernels: on this machine (Local) or
// elsewhere, such as a LAVA lab (package lava). Whatever runs it, a run
// ends in the same Report; infrastructure failures are verdict Error with
// a reason, and a non-nil error means options that make no sense.
type Executor interface {
	Run(ctx context.Context, o Options) (*Report, error)
}

// Local is the Executor that boots the pair on this machine (Run).
type Local struct{}

// Run implements Executor.
func (Local) Run(ctx context.Context, o Options) (*Report, error) { return Run(ctx, o) }

// RemoteChannel is the agents' event channel under a remote executor: the
// events go nowhere but the console, where ready, log, result and error
// events are mirrored (progress events are dropped: a lab keeps the whole
// console log).
const RemoteChannel = "/dev/null"

// Remote is a run prepared for an executor that boots the guests elsewhere
// and sees only their consoles: each guest's initramfs (agent, modules,
// parameters) and the report to fill in.
type Remote struct {
	// Options are the run's options, validated.
	Options Options
	// Initrds are the guests' initramfs files, in the run directory.
	Initrds [2]string
	// Report is filled in by Finish.
	Report *Report
	tc     Testcase
}

// Roles are the guests' roles: guest 0 sends, guest 1 receives.
var Roles = roles

// PrepareRemote validates o and writes each guest's initramfs into the run
// directory, its agent addressed as a says and writing its events on the
// console. A modular kernel's modules are found as for a local run.
func PrepareRemote(ctx context.Context, o Options, a Addressing) (*Remote, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory %s: %w", o.RunDir, err)
	}
	rm := &Remote{Options: o, tc: Registry[o.Test]}
	rm.Report = rm.newReport()
	if err := inspectKernels(&rm.Options); err != nil {
		return nil, err
	}
	o = rm.Options
	images, err := buildImages(ctx, &o, rm.tc)
	if err != nil {
		return nil, err
	}
	params, err := guestParams(&o, rm.tc, a)
	if err != nil {
		return nil, err
	}
	for i, p := range params {
		p.Channel = RemoteChannel
		p.MAC = a.MAC[i]
	}
	if rm.Initrds, err = writeInitrds(ctx, &o, images, params); err != nil {
		return nil, err
	}
	return rm, nil
}

// ReattachRemote is a Remote for a run whose guests were started by an
// earlier process (nothing is built: the report comes from the consoles).
func ReattachRemote(o Options) (*Remote, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory %s: %w", o.RunDir, err)
	}
	rm := &Remote{Options: o, tc: Registry[o.Test]}
	rm.Report = rm.newReport()
	return rm, nil
}

func (rm *Remote) newReport() *Report {
	o := &rm.Options
	r := newReport(o)
	if rm.tc.ESP {
		r.Crypto = o.Crypto
	}
	r.Wire.Verdict = "unknown"
	r.Wire.Missing = []string{"capture (the guests ran remotely)"}
	for i, k := range o.Kernels {
		r.Guests[i] = GuestReport{Role: roles[i], Kernel: abs(k), Console: abs(filepath.Join(o.RunDir, roles[i]+".console"))}
	}
	return r
}

// GuestEnd is how a remotely run guest ended, as the executor saw it.
type GuestEnd struct {
	// Console is the guest's console output (the kernel's and the agent's
	// lines); it is written to the report's console file.
	Console string
	// Err, if set, is why the guest did not end cleanly by the executor's
	// account (the job failed, was cancelled, timed out).
	Err error
}

// Finish turns what the guests printed into the verdict: the report of the
// run, also written to report.json in the run directory. A corruption seen
// by the receiver is a fail even when the executor reports a failure
// afterwards; every other failure is an error.
func (rm *Remote) Finish(ctx context.Context, ends [2]GuestEnd, seconds float64) *Report {
	r := rm.Report
	o := &rm.Options
	var results [2]*proto.Result
	var outs [2]*vm.Outcome
	for i, e := range ends {
		os.WriteFile(r.Guests[i].Console, []byte(e.Console), 0o644)
		out := &vm.Outcome{Name: roles[i], Kind: vm.ExitClean, ConsoleTail: tailLines(e.Console, 20)}
		for _, line := range strings.Split(e.Console, "\n") {
			if strings.Contains(line, "Kernel panic") && out.Kind != vm.ExitPanic {
				out.Kind, out.Reason = vm.ExitPanic, strings.TrimSpace(line)
			}
			ev, ok := parseEvent(line)
			if !ok {
				continue
			}
			switch ev.Type {
			case "ready":
				r.Guests[i].BootSeconds = ev.Uptime
				if ev.Uptime > r.BootSeconds {
					r.BootSeconds = ev.Uptime
				}
			case "result", "error":
				if ev.Result != nil {
					results[i] = ev.Result
				}
				if ev.Type == "error" {
					r.Guests[i].Error = ev.Message
				}
			}
		}
		if out.Kind == vm.ExitClean && e.Err != nil {
			out.Kind, out.Reason = vm.ExitHypervisorError, e.Err.Error()
		}
		outs[i] = out
		r.Guests[i].Outcome = string(out.Kind)
		r.Guests[i].Oopses = scanOopses(r.Guests[i].Console)
		r.Guests[i].setResult(results[i])
	}
	if err := verdict(ctx, o, r, results, outs); err != nil {
		r.Verdict, r.Reason = Error, err.Error()
	}
	r.Seconds = seconds
	writeJSON(filepath.Join(o.RunDir, "report.json"), r)
	return r
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
