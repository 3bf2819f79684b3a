package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/lava"
	"github.com/kbisect/kbisect/testcases"
	"github.com/spf13/pflag"
)

// executorFlags choose where runs happen: here, or as LAVA jobs.
type executorFlags struct {
	kind         string
	url          string
	token        string
	deviceType   string
	serve        string
	artifacts    string
	artifactsDir string
	queueTimeout time.Duration
	priority     int
}

func (f *executorFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.kind, "executor", "local", "where the guests run: local (QEMU here) or lava (one LAVA MultiNode job per run)")
	fl.StringVar(&f.url, "lava-url", os.Getenv("KBISECT_LAVA_URL"), "LAVA server URL (default $KBISECT_LAVA_URL)")
	fl.StringVar(&f.token, "lava-token", "", "LAVA API token (default $KBISECT_LAVA_TOKEN, which keeps it out of a bisection's journal)")
	fl.StringVar(&f.deviceType, "lava-device-type", "qemu", "LAVA device type of the guests")
	fl.StringVar(&f.serve, "lava-serve", "", "host:port where kbisect serves kernels and initramfs to the LAVA workers (default: this machine's address towards the server, a free port)")
	fl.StringVar(&f.artifacts, "lava-artifacts", "", "instead of serving them, copy kernels and initramfs into --lava-artifacts-dir, which a web server publishes at this URL prefix")
	fl.StringVar(&f.artifactsDir, "lava-artifacts-dir", "", "directory published at --lava-artifacts")
	fl.DurationVar(&f.queueTimeout, "lava-queue-timeout", 30*time.Minute, "a LAVA job not started after this is cancelled and the run is an error")
	fl.IntVar(&f.priority, "lava-priority", 50, "LAVA job priority (0-100)")
}

// executor returns the executor the flags ask for and a function that
// releases it (stops the artifact server). ctx is not kept.
func (f *executorFlags) executor(ctx context.Context) (testcases.Executor, func(), error) {
	switch f.kind {
	case "", "local":
		return testcases.Local{}, func() {}, nil
	case "lava":
	default:
		return nil, nil, fmt.Errorf("unknown executor %q: use local or lava", f.kind)
	}
	token := f.token
	if token == "" {
		token = os.Getenv("KBISECT_LAVA_TOKEN")
	}
	c, err := lava.NewClient(f.url, token)
	if err != nil {
		return nil, nil, err
	}
	if f.priority < 0 || f.priority > 100 {
		return nil, nil, fmt.Errorf("--lava-priority %d: use 0..100", f.priority)
	}
	if f.artifacts != "" && f.artifactsDir == "" {
		return nil, nil, fmt.Errorf("--lava-artifacts %s needs --lava-artifacts-dir, the directory it publishes", f.artifacts)
	}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Version(vctx); err != nil {
		return nil, nil, fmt.Errorf("%w (check --lava-url and that the server is up)", err)
	}
	e := &lava.Executor{Client: c, DeviceType: f.deviceType, QueueTimeout: f.queueTimeout, Priority: f.priority}
	release := func() {}
	switch {
	case f.artifacts != "":
		e.Publisher = &lava.Dir{Dir: f.artifactsDir, Prefix: f.artifacts}
	default:
		srv, err := lava.Serve(f.serve, c.URL)
		if err != nil {
			return nil, nil, err
		}
		e.Publisher, release = srv, func() { srv.Close() }
	}
	// A bisection's runs record their LAVA jobs in its job directory, so
	// that `kbisect bisect resume` reattaches to those still running.
	e.StateDir = func(ctx context.Context) string {
		if ri, ok := bisect.RunFromContext(ctx); ok && ri.JobDir != "" {
			return filepath.Join(ri.JobDir, "lava")
		}
		return ""
	}
	return e, release, nil
}
