package lava

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kbisect/kbisect/testcases"
)

// Options say which LAVA lab runs the tests and how the workers get the
// kernels: everything a command needs to set an Executor up.
type Options struct {
	// URL is the server ("https://lava.example.org/").
	URL string
	// Token is an API token of the user; empty reads $KBISECT_LAVA_TOKEN
	// (which keeps it out of a bisection's journal).
	Token string
	// DeviceType of the guests (default "qemu").
	DeviceType string
	// Serve is the host:port where this process serves the artifacts to
	// the workers; empty: this machine's address towards the server, a
	// free port.
	Serve string
	// Artifacts and ArtifactsDir publish the artifacts through a web
	// server instead: files copied into ArtifactsDir appear under the URL
	// prefix Artifacts.
	Artifacts, ArtifactsDir string
	// QueueTimeout, Priority, Visibility: see Executor.
	QueueTimeout time.Duration
	Priority     int
	Visibility   string
	// StateDir: see Executor.
	StateDir func(ctx context.Context) string
}

// New checks o, checks that the server answers (within a minute of ctx,
// which is not kept), starts serving the artifacts unless a web server
// publishes them, and returns the Executor. Close it when done.
func New(ctx context.Context, o Options) (*Executor, error) {
	if o.Token == "" {
		o.Token = os.Getenv("KBISECT_LAVA_TOKEN")
	}
	c, err := NewClient(o.URL, o.Token)
	if err != nil {
		return nil, err
	}
	if o.Priority < 0 || o.Priority > 100 {
		return nil, fmt.Errorf("--lava-priority %d: use 0..100", o.Priority)
	}
	if _, err := visibility(o.Visibility); err != nil {
		return nil, err
	}
	if o.Artifacts != "" && o.ArtifactsDir == "" {
		return nil, fmt.Errorf("--lava-artifacts %s needs --lava-artifacts-dir, the directory it publishes", o.Artifacts)
	}
	if o.DeviceType == "" {
		o.DeviceType = "qemu"
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Version(vctx); err != nil {
		return nil, fmt.Errorf("%w (check --lava-url and that the server is up)", err)
	}
	e := &Executor{Client: c, DeviceType: o.DeviceType, QueueTimeout: o.QueueTimeout, Priority: o.Priority,
		Visibility: o.Visibility, StateDir: o.StateDir}
	if o.Artifacts != "" {
		e.Publisher = &Dir{Dir: o.ArtifactsDir, Prefix: o.Artifacts}
		return e, nil
	}
	if e.Publisher, err = Serve(o.Serve, c.URL); err != nil {
		return nil, err
	}
	return e, nil
}

// NewExecutor returns the executor named where: "local" (or ""), the
// guests run here under QEMU, or "lava", one LAVA MultiNode job per run,
// set up from o (see New). release frees it (stops serving the artifacts).
func NewExecutor(ctx context.Context, where string, o Options) (e testcases.Executor, release func(), err error) {
	switch where {
	case "", "local":
		return testcases.Local{}, func() {}, nil
	case "lava":
	default:
		return nil, nil, fmt.Errorf("unknown executor %q: use local or lava", where)
	}
	le, err := New(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return le, func() { le.Close() }, nil
}

// Close stops serving the artifacts, if this process serves them.
func (e *Executor) Close() error {
	if s, ok := e.Publisher.(*Server); ok {
		return s.Close()
	}
	return nil
}
