package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/cliflags"
	"github.com/kbisect/kbisect/lava"
	"github.com/kbisect/kbisect/testcases"
)

// executorFlags choose where runs happen: here, or as LAVA jobs.
type executorFlags struct {
	kind string
	lava lava.Options
}

func (f *executorFlags) register(fl *pflag.FlagSet) {
	l := &f.lava
	fl.StringVar(&f.kind, "executor", "local", "where the guests run: local (QEMU here) or lava (one LAVA MultiNode job per run)")
	fl.StringVar(&l.URL, "lava-url", os.Getenv("KBISECT_LAVA_URL"), "LAVA server URL (default $KBISECT_LAVA_URL)")
	fl.StringVar(&l.Token, "lava-token", "", "LAVA API token (default $KBISECT_LAVA_TOKEN); never stored: give it again to bisect resume, or use the variable")
	cliflags.MarkSecret(fl, "lava-token")
	fl.StringVar(&l.Visibility, "lava-visibility", "personal", "who may see the LAVA jobs: personal (you), public, or group:NAME[,NAME...]")
	fl.StringVar(&l.DeviceType, "lava-device-type", "qemu", "LAVA device type of the guests")
	fl.StringVar(&l.Serve, "lava-serve", "", "host:port where kbisect serves kernels and initramfs to the LAVA workers (default: this machine's address towards the server, a free port)")
	fl.StringVar(&l.Artifacts, "lava-artifacts", "", "instead of serving them, copy kernels and initramfs into --lava-artifacts-dir, which a web server publishes at this URL prefix")
	fl.StringVar(&l.ArtifactsDir, "lava-artifacts-dir", "", "directory published at --lava-artifacts")
	fl.DurationVar(&l.QueueTimeout, "lava-queue-timeout", 30*time.Minute, "a LAVA job not started after this is cancelled and the run is an error")
	fl.IntVar(&l.Priority, "lava-priority", 50, "LAVA job priority (0-100)")
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
	o := f.lava
	// A bisection's runs record their LAVA jobs in its job directory, so
	// that `kbisect bisect resume` reattaches to those still running.
	o.StateDir = func(ctx context.Context) string { return bisect.StateDir(ctx, "lava") }
	e, err := lava.New(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return e, func() { e.Close() }, nil
}
