// Command kbisect-agent is the guest side of kbisect: it runs as /init in the
// test guests' initramfs, sets the guest up (file systems, modules, network),
// runs the guest side of the testcase named in its parameters, reports on the
// result channel and powers the guest off.
//
// It must run on every kernel kbisect tests, 2.6.32 included: it uses only
// system calls old kernels have and falls back where newer ones are missing.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/kbisect/kbisect/testcases/agent"
	"github.com/kbisect/kbisect/testcases/proto"
)

func main() {
	if os.Getpid() == 1 {
		setupSystem()
	}
	params, err := readParams(proto.ParamsPath)
	ch := openChannel(params)
	if err != nil {
		ch.send(proto.Event{Type: "error", Message: err.Error()})
		finish(params, ch)
	}
	// A module that fails to load is reported but not fatal: some are
	// optional (jitterentropy_rng refuses TCG's timer), and a missing
	// feature shows up, named, where the test needs it.
	if err := loadModules(params.Modules); err != nil {
		ch.send(proto.Event{Type: "log", Role: params.Role, Message: err.Error()})
	}
	if err := setupNetwork(params); err != nil {
		ch.send(proto.Event{Type: "error", Role: params.Role, Message: fmt.Sprintf("network: %v", err)})
		finish(params, ch)
	}
	ch.send(proto.Event{Type: "ready", Role: params.Role})
	// The host enforces the real deadline; this one only keeps a guest
	// whose peer died from waiting forever.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(params.Duration)+3*time.Minute)
	res, err := agent.Run(ctx, params, ch.send)
	cancel()
	if err != nil {
		ch.send(proto.Event{Type: "error", Role: params.Role, Message: err.Error(), Result: res})
	} else {
		ch.send(proto.Event{Type: "result", Role: params.Role, Result: res})
	}
	finish(params, ch)
}

func readParams(path string) (*proto.Params, error) {
	p := &proto.Params{InjectOffset: -1}
	b, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("read parameters: %w", err)
	}
	if err := json.Unmarshal(b, p); err != nil {
		return p, fmt.Errorf("parse parameters %s: %w", path, err)
	}
	return p, nil
}

// finish ends the agent once ch has sent everything: a shell for --shell,
// otherwise power off. It never returns.
func finish(p *proto.Params, ch *channel) {
	ch.drain()
	if p != nil && p.Shell {
		for _, sh := range []string{"/bbin/gosh", "/bin/gosh", "/bbin/elvish", "/bin/sh"} {
			if _, err := os.Stat(sh); err != nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "kbisect-agent: starting %s (exit it to power off)\n", sh)
			cmd := exec.Command(sh)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			cmd.Run()
			break
		}
	}
	powerOff()
}
