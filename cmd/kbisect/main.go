// Command kbisect finds the kernel commit that introduced a sporadic bug: it
// builds candidate kernels, boots them as a pair of guests joined by a virtual
// wire or a real NAT, runs a stress test between them and bisects on the
// verdicts.
// It turns flags into options, prints, and maps outcomes to exit statuses:
// the packages of the stages do the work.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/cliflags"
	"github.com/kbisect/kbisect/internal/version"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"

	// Keeps what dependencies write while initialised in kbisect's cache.
	_ "github.com/kbisect/kbisect/internal/cachedir/settle"
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

// newRootCmd is the kbisect command with all its subcommands.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kbisect",
		Short:         "Bisect sporadic kernel bugs on pairs of guests",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.AddCommand(newRunCmd(), newTestCmd(), newBuildCmd(), newKconfigCmd(), newBisectCmd(),
		newValidateCmd(), newAnalyzeCmd(), newSimCmd(), newDemoCmd(), newLadderCmd(), newCandidatesCmd(), newMatrixCmd())
	// Shell completion offers these values for a flag, whatever the
	// command, and the branches and tags of --repo for a commit.
	cliflags.AddCompletions(root, map[string][]string{
		"test":       testcases.Names(),
		"crypto":     slices.Sorted(maps.Keys(proto.Suites)),
		"strategy":   {"bayes", "classic", "classic:5"},
		"topology":   {"direct", "nat"},
		"hypervisor": {testcases.HypervisorQEMU, testcases.HypervisorXen},
		"xen-guest":  {"pv", "pvh"},
		"find":       {bisect.FindRegression, bisect.FindFix},
		"unit":       {string(bisect.UnitRuns), string(bisect.UnitTime)},
		"executor":   {"local", "lava"},
		"pattern":    {"zero", "prng"},
	}, []string{"good", "bad", "rev", "base"})
	root.SetFlagErrorFunc(cliflags.SuggestFlag)
	return root
}

// printJSON writes v to w as one indented JSON object: what --json prints.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printResult writes a command's result to w: as one JSON object with
// --json (asJSON), else as its text.
func printResult(w io.Writer, r interface{ WriteText(io.Writer) }, asJSON bool) error {
	if asJSON {
		return printJSON(w, r)
	}
	r.WriteText(w)
	return nil
}

func main() {
	// Ctrl-C, kill and a closed terminal (or ssh session) all stop a
	// bisection the same way: resumable, exit 130. Under nohup SIGHUP
	// stays ignored.
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	cmd, err := newRootCmd().ExecuteContextC(ctx)
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
	// With --json, stdout is read by a program: it gets the error as the
	// one JSON object it expects.
	if f := cmd.Flags().Lookup("json"); f != nil && f.Value.String() == "true" {
		json.NewEncoder(os.Stdout).Encode(struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}{err.Error(), code})
	}
	os.Exit(code)
}
