// Package agent holds the guest sides of kbisect's testcases, run by the
// agent inside each test guest. It is compiled into the agent, so it imports
// nothing of the host side.
package agent

import (
	"context"
	"fmt"
	"sort"

	"github.com/kbisect/kbisect/testcases/proto"
)

// Send delivers one event to the host.
type Send func(proto.Event)

// runner is the guest side of one testcase.
type runner func(ctx context.Context, p *proto.Params, send Send) (*proto.Result, error)

var registry = map[string]runner{
	// natt-esp: TCP streams in ESP-in-UDP (NAT-T) transport mode.
	"natt-esp": func(ctx context.Context, p *proto.Params, send Send) (*proto.Result, error) {
		if p.ESP == nil {
			return nil, fmt.Errorf("natt-esp needs ESP parameters")
		}
		sa, err := setupESP(ctx, p)
		if err != nil {
			return nil, err
		}
		if p.StopOnFail {
			// A packet whose ICV does not verify is dropped by the
			// kernel, so no byte check sees it: watch the SAs' counters,
			// and end the run at the first one as at a corruption.
			var stop context.CancelFunc
			ctx, stop = context.WithCancel(ctx)
			defer stop()
			go sa.stopOnAuthFailure(ctx, stop, send, p.Role)
		}
		var atOffset func() error
		if p.InjectSide == proto.InjectAuth && p.Role == proto.RoleSender {
			atOffset = sa.forgeBadICV
		}
		res, err := runStreamsWith(ctx, p, send, atOffset)
		if res != nil {
			res.XfrmState, res.ESPPackets, res.AuthFailures = sa.describe()
			res.CryptoDrivers = cryptoDrivers()
		}
		return res, err
	},
	// tcp: the same streams in the clear, the baseline for throughput.
	"tcp": runStreams,
}

// Names lists the guest-side testcases.
func Names() []string {
	var n []string
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Run runs the guest side of p.Test. The result is non-nil whenever any
// bytes moved, even with an error.
func Run(ctx context.Context, p *proto.Params, send Send) (*proto.Result, error) {
	r, ok := registry[p.Test]
	if !ok {
		return nil, fmt.Errorf("unknown testcase %q (the agent knows %v)", p.Test, Names())
	}
	return r(ctx, p, send)
}
