//go:build !linux

package netlab

import (
	"context"
	"errors"
)

var errNotLinux = errors.New("netlab: needs Linux (AF_UNIX datagram relay, network namespaces, taps)")

func newDirect(Options) (topology, error)               { return nil, errNotLinux }
func newNAT(context.Context, Options) (topology, error) { return nil, errNotLinux }
