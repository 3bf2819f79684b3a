package vm

import (
	"context"
	"errors"
	"fmt"
)

// Pair is two guests that live and die together: when one ends with an
// error (panic, timeout, hypervisor failure) the other is stopped, and both
// are stopped when the context ends. A guest that ends cleanly (its agent
// finished and rebooted) does not stop its peer.
type Pair struct {
	A, B *Guest
	done chan struct{}
}

// StartPair starts the guests a and b concurrently. If either fails to
// start, the other is closed and the error returned.
func StartPair(ctx context.Context, a, b Config) (*Pair, error) {
	if a.Name == "" {
		a.Name = "a"
	}
	if b.Name == "" {
		b.Name = "b"
	}
	if a.Name == b.Name {
		return nil, fmt.Errorf("guest pair: both guests are named %q: give them different names", a.Name)
	}
	type res struct {
		g   *Guest
		err error
	}
	ca, cb := make(chan res, 1), make(chan res, 1)
	go func() { g, err := Start(ctx, a); ca <- res{g, err} }()
	go func() { g, err := Start(ctx, b); cb <- res{g, err} }()
	ra, rb := <-ca, <-cb
	if ra.err != nil || rb.err != nil {
		for _, r := range []res{ra, rb} {
			if r.g != nil {
				r.g.Close()
			}
		}
		return nil, errors.Join(ra.err, rb.err)
	}
	p := &Pair{A: ra.g, B: rb.g, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

// watch stops the peer of a guest that failed.
func (p *Pair) watch() {
	defer close(p.done)
	first, other := p.A, p.B
	select {
	case <-p.A.Done():
	case <-p.B.Done():
		first, other = p.B, p.A
	}
	if o := first.Wait(); o.Kind != ExitClean {
		other.requestStop(ExitKilled, fmt.Sprintf("peer %s ended: %v", first.Name(), o.Err()))
	}
	<-other.Done()
}

// Wait blocks until both guests have ended and returns their outcomes.
func (p *Pair) Wait() (a, b *Outcome) {
	<-p.done
	return p.A.Wait(), p.B.Wait()
}

// Close stops both guests and releases their resources.
func (p *Pair) Close() error {
	errc := make(chan error, 1)
	go func() { errc <- p.B.Close() }()
	errA := p.A.Close()
	errB := <-errc
	<-p.done
	return errors.Join(errA, errB)
}
