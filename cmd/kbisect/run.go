package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/cliflags"
	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/internal/statusline"
	"github.com/kbisect/kbisect/lava"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/vm"
)

// runFlags are the options of one test run, shared by run, test, bisect
// and validate.
type runFlags struct {
	opts       testcases.Options
	pcap       string
	injectSide string
	exec       executorFlags
}

// register adds the run options to a flag set.
func (f *runFlags) register(fl *pflag.FlagSet, withKernel bool) {
	if withKernel {
		fl.StringVar(&f.opts.Kernels[0], "kernel", "", "kernel image of the sender (bzImage or vmlinux)")
		fl.StringVar(&f.opts.Kernels[1], "peer-kernel", "", "kernel image of the receiver (default: --kernel)")
		fl.StringVar(&f.opts.Modules[0], "modules", "", "modules dir of --kernel (default: /lib/modules/<release> if the kernel is modular)")
		fl.StringVar(&f.opts.Modules[1], "peer-modules", "", "modules dir of --peer-kernel")
	}
	fl.StringVar(&f.opts.Test, "test", "natt-esp", "testcase: "+strings.Join(testcases.Names(), ", "))
	fl.DurationVar(&f.opts.Duration, "duration", 60*time.Second, "how long the traffic runs")
	fl.StringVar(&f.opts.Topology, "topology", "direct", "wire between the guests: direct or nat (the sender behind a real NAT)")
	fl.StringVar(&f.opts.Crypto, "crypto", "cbc-aes-sha1", "ESP suite: cbc-aes-sha1, cbc-aes-sha256, gcm-aes, null-sha1")
	fl.IntVar(&f.opts.Streams, "streams", 1, "parallel TCP streams")
	fl.StringVar(&f.opts.Pattern, "pattern", "zero", "payload: zero (as in the seed report) or prng")
	fl.StringVar(&f.opts.WriteSizes, "write-sizes", "fixed", "the sender's writes: fixed (64 KiB, as dd | nc) or vary (1 B to 64 KiB, each ending its own TCP segment: more ESP packet sizes and trailer positions per minute, fewer bytes)")
	fl.IntVar(&f.opts.MTU, "mtu", 0, "MTU of the guests' link (default 1500)")
	fl.StringVar(&f.opts.RunDir, "keep", "", "directory for console logs, captures and keys (default: a new dir under the cache)")
	fl.StringVar(&f.pcap, "pcap", "", "also copy the capture to this file (implies capture)")
	fl.BoolVar(&f.opts.Capture, "capture", true, "capture the wire and analyse it")
	fl.Int64Var(&f.opts.InjectOffset, "inject-corruption", -1, "self-test: corrupt this byte offset of stream 0")
	fl.StringVar(&f.injectSide, "inject-side", "receiver", "where --inject-corruption acts: receiver (after decryption), sender (before encryption), or auth (the sender sends one ESP packet whose ICV fails, after that offset)")
	fl.BoolVar(&f.opts.FailOnOops, "fail-on-oops", false, "a kernel oops or WARN in a guest console is a fail")
	fl.BoolVar(&f.opts.StopOnFail, "stop-on-fail", false, "end the traffic at the first corruption")
	fl.BoolVar(&f.opts.SIMDCanary, "simd-canary", false, "diagnostic: a thread in each agent holds known values in the SIMD registers; the run fails if they change under it (user SIMD state lost)")
	fl.BoolVar(&f.opts.Shell, "shell", false, "debug: end the receiver in a shell on this terminal instead of powering off")
	fl.StringVar(&f.opts.Accel, "accel", "auto", "auto, tcg or kvm")
	fl.StringVar(&f.opts.Hypervisor, "hypervisor", "qemu", "qemu, or xen: the guests as Xen domUs with netfront, in a Xen host nested under QEMU")
	fl.StringVar(&f.opts.XenGuestType, "xen-guest", "pv", "Xen domU type with --hypervisor xen: pv or pvh")
	fl.StringVar(&f.opts.XenCPU, "xen-cpu", "", "QEMU CPU model of the nested Xen host with --hypervisor xen (default "+vm.DefaultXenCPU+"); e.g. without AES-NI: qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+svm,+npt")
	fl.StringVar(&f.opts.XenAppend, "xen-append", "", "extra Xen hypervisor command line with --hypervisor xen, e.g. spec-ctrl=eager-fpu")
	fl.StringVar(&f.opts.Dom0Kernel, "dom0-kernel", "", "dom0 kernel of the nested Xen host (default: a /boot/vmlinuz-* with CONFIG_XEN_DOM0)")
	fl.StringVar(&f.opts.Append, "append", "", "extra kernel command line for both guests")
	fl.IntVar(&f.opts.MemoryMB, "memory", 512, "guest memory in MiB")
	f.exec.register(fl)
}

// options returns the testcase options with the run dir set, checked:
// with the kernels of --kernel (kbisect run) all of them, else (the kernel
// is built later) only the test's.
func (f *runFlags) options(withKernel bool) (testcases.Options, error) {
	o := f.opts
	if o.InjectOffset >= 0 {
		o.InjectSide = f.injectSide
	}
	if f.pcap != "" {
		o.Capture = true
	}
	if o.RunDir == "" {
		o.RunDir = filepath.Join(cachedir.Dir("runs"), time.Now().Format("20060102-150405.000"))
	}
	if !withKernel {
		return o, o.ValidateTest()
	}
	return o, o.Validate()
}

func newRunCmd() *cobra.Command {
	var f runFlags
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "run --kernel IMAGE [--peer-kernel IMAGE] --test natt-esp",
		Short: "Boot a pair of guests and run a test between them",
		Long:  help("run"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(true)
			if err != nil {
				return err
			}
			p := statusline.NewLog(statusline.Stderr())
			defer p.Close()
			o.Progress, o.Status = p.Phase, p.Status
			exec, release, err := f.exec.executor(cmd.Context())
			if err != nil {
				return err
			}
			defer release()
			r, err := exec.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if f.pcap != "" && len(r.Pcaps) > 0 {
				if err := fsutil.CopyFile(r.Pcaps[0], f.pcap, 0o644); err != nil {
					return fmt.Errorf("copy capture to %s: %w", f.pcap, err)
				}
			}
			// The verdict is the exit status, whatever stdout takes.
			printResult(cmd.OutOrStdout(), r, jsonOut)
			switch r.Verdict {
			case testcases.Pass:
				return nil
			case testcases.Fail:
				return &exitError{code: 1}
			default:
				return &exitError{code: 2}
			}
		},
	}
	f.register(cmd.Flags(), true)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print one JSON object")
	return cmd
}

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
	o := f.lava
	// A bisection's runs record their LAVA jobs in its job directory, so
	// that `kbisect bisect resume` reattaches to those still running.
	o.StateDir = func(ctx context.Context) string { return bisect.StateDir(ctx, "lava") }
	return lava.NewExecutor(ctx, f.kind, o)
}
