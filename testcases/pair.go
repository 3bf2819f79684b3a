package testcases

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kbisect/kbisect/netlab"
	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/kbisect/kbisect/vm"
	"github.com/kbisect/kbisect/vmimage"
)

// bootBudget is how long a guest may take from launch to the end of its
// test beyond the test's own duration: boot under TCG, module loading, the
// NAT-T hello, draining the streams.
const bootBudget = 3 * time.Minute

var roles = [2]string{proto.RoleSender, proto.RoleReceiver}

// Run boots the pair, runs the test and returns the report. The report is
// never nil: infrastructure failures are verdict Error with a reason. The
// error is non-nil only for options that make no sense (bad input).
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r := newReport(&o)
	if Registry[o.Test].ESP {
		r.Crypto = o.Crypto
	}
	r.Wire.Verdict = "unknown"
	defer func() { r.Seconds = time.Since(start).Seconds() }()
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory %s: %w", o.RunDir, err)
	}
	if err := runPair(ctx, &o, r); err != nil {
		r.Verdict, r.Reason = Error, err.Error()
	}
	writeJSON(filepath.Join(o.RunDir, "report.json"), r)
	return r, nil
}

// runPair does the work of Run; an error is an infrastructure failure.
func runPair(ctx context.Context, o *Options, r *Report) error {
	if o.Hypervisor == HypervisorXen {
		return runXenPair(ctx, o, r)
	}
	tc := Registry[o.Test]
	for i, k := range o.Kernels {
		r.Guests[i] = GuestReport{Role: roles[i], Kernel: abs(k), Console: abs(filepath.Join(o.RunDir, roles[i]+".console"))}
	}
	if err := inspectKernels(o); err != nil {
		return err
	}
	images, err := buildImages(ctx, o, tc)
	if err != nil {
		return err
	}
	lab, err := netlab.New(ctx, netlab.Options{Topology: o.Topology, CaptureDir: captureDir(o), MTU: o.MTU})
	if err != nil {
		return fmt.Errorf("wire: %w", err)
	}
	defer lab.Close()
	guests := lab.Endpoints()
	var addr Addressing
	for i, g := range guests {
		addr.Addr[i], addr.Gateway[i], addr.PeerView[i] = g.Addr, g.Gateway, g.PeerView
	}
	params, err := guestParams(o, tc, addr)
	if err != nil {
		return err
	}
	if o.MTU == 0 {
		params[0].MTU, params[1].MTU = guests[0].MTU, guests[1].MTU
	}
	initrds, err := writeInitrds(ctx, o, images, params)
	if err != nil {
		return err
	}
	defer removeFiles(initrds)
	var cfgs [2]vm.Config
	for i := range cfgs {
		cfgs[i] = guestConfig(o, r, i, initrds[i], bootBudget)
		cfgs[i].Accel = o.Accel
		cfgs[i].Netdevs = []vm.Netdev{{Kind: vm.NetKind(guests[i].Kind), File: guests[i].File, MAC: mac(guests[i].MAC)}}
		if o.Shell && i == 1 {
			cfgs[i].Timeout = 0
			cfgs[i].ConsoleInput, cfgs[i].ConsoleOutput = os.Stdin, os.Stdout
		}
	}
	r.Path = fmt.Sprintf("qemu-%s/virtio-net", accelName(o.Accel))
	if tc.ESP && captureDir(o) != "" {
		keys := esp.KeysFromConfigs(o.Pattern, params[0].Seed, o.Streams, *params[0].ESP, *params[1].ESP)
		r.Pcaps = lab.Captures()
		if len(r.Pcaps) > 0 {
			kp, sp, err := esp.ExportForPcap(r.Pcaps[0], keys)
			if err != nil {
				return fmt.Errorf("export keys: %w", err)
			}
			r.Keys, r.ESPSA = kp, sp
		}
	}
	o.progress("booting %s and %s (%s, %s)", filepath.Base(o.Kernels[0]), filepath.Base(o.Kernels[1]), o.Topology, o.Test)
	pair, err := vm.StartPair(ctx, cfgs[0], cfgs[1])
	if err != nil {
		return fmt.Errorf("start guests: %w", err)
	}
	defer pair.Close()
	results := collect(o, r, pair)
	oa, ob := pair.Wait()
	if lab.Close() == nil {
		st, err := lab.Stats()
		r.captureComplete = err == nil && st.CaptureDrops == 0
	}
	outcomes := [2]*vm.Outcome{oa, ob}
	for i, out := range outcomes {
		r.Guests[i].Outcome = string(out.Kind)
		r.Guests[i].Oopses = scanOopses(r.Guests[i].Console)
		r.Guests[i].setResult(results[i])
	}
	return verdict(ctx, o, r, results, outcomes)
}

// collect reads both agents' event lines until both channels close.
func collect(o *Options, r *Report, pair *vm.Pair) [2]*proto.Result {
	var results [2]*proto.Result
	launch := pair.A.Started()
	if t := pair.B.Started(); t.Before(launch) {
		launch = t
	}
	type line struct {
		i int
		s string
	}
	lines := make(chan line)
	for i, g := range []*vm.Guest{pair.A, pair.B} {
		go func() {
			for s := range g.Lines() {
				lines <- line{i, s}
			}
			lines <- line{i, ""}
		}()
	}
	var ready [2]bool
	for open := 2; open > 0; {
		l := <-lines
		if l.s == "" {
			open--
			continue
		}
		ev, ok := parseEvent(l.s)
		if !ok {
			continue
		}
		switch ev.Type {
		case "ready":
			ready[l.i] = true
			r.Guests[l.i].BootSeconds = ev.Uptime
			if ev.Uptime > r.BootSeconds {
				r.BootSeconds = ev.Uptime
			}
			if ready[0] && ready[1] {
				r.BootWallSeconds = time.Since(launch).Seconds()
				o.progress("both guests ready after %.1fs (guest uptime %.2fs / %.2fs)", r.BootWallSeconds, r.Guests[0].BootSeconds, r.Guests[1].BootSeconds)
			}
		case "progress":
			if l.i == 1 {
				o.status("%s verified", humanBytes(ev.Bytes))
			}
		case "log":
			o.progress("%s: %s", roles[l.i], ev.Message)
		case "result", "error":
			if ev.Result != nil {
				results[l.i] = ev.Result
			}
			if ev.Type == "error" {
				r.Guests[l.i].Error = ev.Message
				// The peer would only wait for its partner until its
				// own give-up time: stop it now.
				other := []*vm.Guest{pair.B, pair.A}[l.i]
				go other.Stop(context.Background())
			}
		}
	}
	return results
}

func parseEvent(s string) (proto.Event, bool) {
	var ev proto.Event
	i := strings.Index(s, proto.EventPrefix)
	if i < 0 {
		return ev, false
	}
	if err := json.Unmarshal([]byte(s[i+len(proto.EventPrefix):]), &ev); err != nil {
		return ev, false
	}
	return ev, true
}

// verdict turns what the guests reported into pass, fail or error.
// Corruption seen by the receiver is a fail even when something else went
// wrong afterwards; everything else that went wrong is an error.
func verdict(ctx context.Context, o *Options, r *Report, results [2]*proto.Result, outs [2]*vm.Outcome) error {
	recv, send := results[1], results[0]
	if send != nil {
		r.BytesSent = send.BytesSent
	}
	if recv != nil {
		r.BytesVerified = recv.BytesVerified
		r.Corruptions = recv.Corruptions
		r.ThroughputMbit = recv.ThroughputMbit
		r.TestSeconds = recv.Seconds
	}
	if len(r.Pcaps) > 0 && r.Keys != "" {
		analyzeWire(ctx, r, recv)
	}
	if recv != nil && len(recv.Corruptions) > 0 {
		c := recv.Corruptions[0]
		n := len(recv.Corruptions) + recv.CorruptionsDropped
		r.Verdict = Fail
		r.Reason = fmt.Sprintf("%d corruption(s) in the received stream; first at stream %d offset %d, %d byte(s): expected %x, got %x", n, c.Stream, c.Offset, c.Length, []byte(c.Expected), []byte(c.Seen))
		if auth := authFailures(r); auth != "" {
			r.Reason += "; and " + auth
		}
		if r.Wire.Verdict != "unknown" {
			r.Reason += "; wire: " + r.Wire.Verdict
		}
		return nil
	}
	for i, g := range r.Guests {
		if c := g.SIMDCanary; c != nil && c.Clobbered > 0 {
			s := c.Samples[0]
			r.Verdict = Fail
			r.Reason = fmt.Sprintf("SIMD canary: registers changed under the %s's application %d time(s) in %d checks (first: xmm%d %x became %x after %.1fs): the kernel or what runs it lost user SIMD state",
				roles[i], c.Clobbered, c.Checks, s.Register, []byte(s.Expected), []byte(s.Seen), s.Seconds)
			return nil
		}
	}
	if auth := authFailures(r); auth != "" {
		r.Verdict = Fail
		r.Reason = auth + ", no corrupted byte reached the application"
		if r.Wire.Verdict != "unknown" {
			r.Reason += "; wire: " + r.Wire.Verdict
		}
		return nil
	}
	if o.FailOnOops {
		for i, g := range r.Guests {
			if len(g.Oopses) > 0 {
				r.Verdict = Fail
				r.Reason = fmt.Sprintf("kernel oops/WARN on the %s: %s", roles[i], g.Oopses[0])
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	// An agent's own error explains more than its peer being stopped
	// because of it, and a panic more than anything else.
	for i, out := range outs {
		if out.Kind == vm.ExitPanic {
			return fmt.Errorf("%s guest: %w", roles[i], out.Err())
		}
	}
	for i := range outs {
		if r.Guests[i].Error != "" {
			return fmt.Errorf("%s agent: %s", roles[i], r.Guests[i].Error)
		}
	}
	for i, out := range outs {
		if out.Kind != vm.ExitClean {
			if err := out.Err(); err != nil {
				return fmt.Errorf("%s guest: %w", roles[i], err)
			}
		}
		if results[i] == nil {
			return fmt.Errorf("%s guest ended without a result: %s", roles[i], tailOr(out.ConsoleTail, "no console output"))
		}
	}
	if recv.BytesVerified < minBytes {
		return fmt.Errorf("only %d bytes reached the receiver in %v: too little to call it a pass", recv.BytesVerified, o.Duration)
	}
	r.Verdict = Pass
	r.Reason = fmt.Sprintf("%s verified in %.0fs at %.1f Mbit/s, no corruption", humanBytes(recv.BytesVerified), recv.Seconds, recv.ThroughputMbit)
	return nil
}

// authFailures describes the ESP packets the guests' kernels dropped for a
// bad ICV: an ESP output path (the peer's) corrupted them on their way out,
// and TCP sent the data again. It is "" when there were none.
func authFailures(r *Report) string {
	var parts []string
	for i, g := range r.Guests {
		if g.AuthFailures > 0 {
			parts = append(parts, fmt.Sprintf("%d ESP packet(s) from the %s failed authentication at the %s (dropped; TCP resent the data)", g.AuthFailures, roles[1-i], roles[i]))
		}
	}
	return strings.Join(parts, "; ")
}

func tailOr(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// buildImages builds (or finds in the cache) each guest's initramfs.
func buildImages(ctx context.Context, o *Options, tc Testcase) ([2]*vmimage.Image, error) {
	var imgs [2]*vmimage.Image
	for i := range imgs {
		if i == 1 && o.Modules[1] == o.Modules[0] {
			imgs[1] = imgs[0]
			break
		}
		opts := vmimage.Options{Shell: o.Shell, ModulesDir: o.Modules[i]}
		if o.Modules[i] != "" {
			opts.Modules = tc.Modules
		}
		img, err := vmimage.Build(ctx, opts)
		if err != nil {
			return imgs, fmt.Errorf("initramfs: %w", err)
		}
		imgs[i] = img
	}
	return imgs, nil
}

func captureDir(o *Options) string {
	if !o.Capture {
		return ""
	}
	return o.RunDir
}

// needsModules says whether a kernel may want modules from
// /lib/modules/<release>: a bzImage from a distribution does; an ELF
// vmlinux (kbisect's own builds, booted by PVH) has everything built in.
func needsModules(info *vm.KernelInfo) bool {
	return info.Format == vm.FormatBzImage
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func accelName(a string) string {
	if a == "" || a == "auto" {
		return vm.DetectAccel().Accel
	}
	return a
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// mac parses a MAC address netlab chose; nil lets vm pick one.
func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return m
}

// guestConfig is what guest i gets whatever hosts it: its kernel and
// initramfs, the run's command line and memory, one vCPU, its console log,
// and the run's length plus budget to boot and finish.
func guestConfig(o *Options, r *Report, i int, initrd string, budget time.Duration) vm.Config {
	return vm.Config{
		Name:       roles[i],
		Kernel:     o.Kernels[i],
		Initrd:     initrd,
		Append:     o.Append,
		MemoryMB:   o.MemoryMB,
		CPUs:       1,
		ConsoleLog: r.Guests[i].Console,
		Timeout:    o.Duration + budget,
		Logf:       func(f string, a ...any) { o.progress(f, a...) },
	}
}

// inspectKernels checks that each of o.Kernels is a kernel image and, for a
// modular kernel given no modules dir, uses /lib/modules/<release> when the
// host has it.
func inspectKernels(o *Options) error {
	for i, k := range o.Kernels {
		info, err := vm.InspectKernel(k)
		if err != nil {
			return err
		}
		if o.Modules[i] == "" && info.Release != "" && needsModules(info) {
			if d := filepath.Join("/lib/modules", info.Release); isDir(d) {
				o.Modules[i] = d
			}
		}
	}
	return nil
}

// writeInitrds writes each guest's initramfs into the run directory: its
// image plus params[i] (with the image's modules) as the agent's params
// file. On error nothing is left behind.
func writeInitrds(ctx context.Context, o *Options, images [2]*vmimage.Image, params [2]*proto.Params) ([2]string, error) {
	var paths [2]string
	for i := range paths {
		params[i].Modules = images[i].Modules
		pj, _ := json.Marshal(params[i])
		path := filepath.Join(o.RunDir, roles[i]+".initramfs.cpio")
		if err := vmimage.WithFiles(ctx, images[i], map[string][]byte{proto.ParamsPath: pj}, path); err != nil {
			removeFiles(paths)
			return [2]string{}, err
		}
		paths[i] = path
	}
	return paths, nil
}

// removeFiles removes the files named, ignoring empty names.
func removeFiles(paths [2]string) {
	for _, p := range paths {
		if p != "" {
			os.Remove(p)
		}
	}
}
