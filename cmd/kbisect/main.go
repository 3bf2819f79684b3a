// Command kbisect finds the kernel commit that introduced a sporadic bug: it
// builds candidate kernels, boots them as a pair of guests joined by a virtual
// wire or a real NAT, runs a stress test between them and bisects on the
// verdicts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit status out of a command (kbisect test
// uses git bisect run's codes).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

var rootCmd = &cobra.Command{
	Use:           "kbisect",
	Short:         "Bisect sporadic kernel bugs on pairs of guests",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	code := 2
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			os.Exit(code)
		}
	}
	fmt.Fprintf(os.Stderr, "kbisect: %v\n", err)
	os.Exit(code)
}
