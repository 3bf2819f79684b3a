package testcases

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/kbisect/kbisect/vm"
	"github.com/kbisect/kbisect/vm/xenctl"
	"github.com/kbisect/kbisect/vmimage"
)

// Hypervisors a run can use (Options.Hypervisor).
const (
	HypervisorQEMU = "qemu"
	HypervisorXen  = "xen"
)

// xenBootBudget replaces bootBudget under nested Xen: Xen and dom0 boot
// first, and every domU instruction goes through two layers of emulation.
const xenBootBudget = 8 * time.Minute

// xenDomUModules is what a modular domU kernel adds to the test's modules:
// the netfront NIC.
var xenDomUModules = []string{"xen-netfront"}

// The wire inside dom0, with netlab's address plan.
var xenWires = map[string]struct {
	bridges []xenctl.Bridge
	bridge  [2]string
	addr    Addressing
	// pcaps name the capture of each guest's vif, as netlab names its own.
	pcaps [2]string
}{
	xenctl.TopologyDirect: {
		bridges: []xenctl.Bridge{{Name: "xbr0"}},
		bridge:  [2]string{"xbr0", "xbr0"},
		addr: Addressing{
			Addr:     [2]string{"198.18.0.1/24", "198.18.0.2/24"},
			PeerView: [2]string{"198.18.0.2", "198.18.0.1"},
		},
		// Everything between A and B crosses A's vif.
		pcaps: [2]string{"wire.pcap", ""},
	},
	xenctl.TopologyNAT: {
		bridges: []xenctl.Bridge{{Name: "xbr-in", Addr: "198.18.1.1/24"}, {Name: "xbr-out", Addr: "198.19.0.1/24"}},
		bridge:  [2]string{"xbr-in", "xbr-out"},
		addr: Addressing{
			Addr:     [2]string{"198.18.1.2/24", "198.19.0.2/24"},
			Gateway:  [2]string{"198.18.1.1", ""},
			PeerView: [2]string{"198.19.0.2", "198.19.0.1"},
		},
		pcaps: [2]string{"nat-inside.pcap", "nat-outside.pcap"},
	},
}

// runXenPair runs the pair as Xen domUs in a nested Xen host; an error is an
// infrastructure failure.
func runXenPair(ctx context.Context, o *Options, r *Report) error {
	tc := Registry[o.Test]
	tc.Modules = append(append([]string{}, tc.Modules...), xenDomUModules...)
	for i, k := range o.Kernels {
		r.Guests[i] = GuestReport{Role: roles[i], Kernel: abs(k), Console: abs(filepath.Join(o.RunDir, roles[i]+".console"))}
	}
	if err := inspectKernels(o); err != nil {
		return err
	}
	guestType := o.XenGuestType
	if guestType == "" {
		guestType = vm.XenPV
	}
	// A kernel that cannot be this kind of domU is refused before anything
	// boots (the nested host takes a minute to start).
	for _, k := range o.Kernels {
		if _, err := vm.XenBootImage(ctx, k, guestType); err != nil {
			return err
		}
	}
	dom0Kernel, dom0Mods, err := Dom0Kernel(o.Dom0Kernel)
	if err != nil {
		return err
	}
	images, err := buildImages(ctx, o, tc)
	if err != nil {
		return err
	}
	dom0, err := vmimage.BuildDom0(ctx, vmimage.Dom0Options{ModulesDir: dom0Mods})
	if err != nil {
		return err
	}
	wire := xenWires[o.Topology]
	params, err := guestParams(o, tc, wire.addr)
	if err != nil {
		return err
	}
	for _, p := range params {
		p.Channel = proto.ChannelConsole
		if p.MTU == 0 {
			p.MTU = 1500
		}
	}
	initrds, err := writeInitrds(ctx, o, images, params)
	if err != nil {
		return err
	}
	defer removeFiles(initrds)
	var cfgs [2]vm.Config
	for i := range cfgs {
		cfgs[i] = guestConfig(o, r, i, initrds[i], xenBootBudget)
	}
	r.Path = fmt.Sprintf("xen-%s/netfront", guestType)
	r.XenCPU = o.XenCPU
	if r.XenCPU == "" {
		r.XenCPU = vm.DefaultXenCPU
	}
	r.XenConsole = abs(filepath.Join(o.RunDir, "xen.console"))
	xo := vm.XenOptions{
		Dom0Kernel: dom0Kernel,
		Dom0Image:  dom0,
		Topology:   o.Topology,
		Bridges:    wire.bridges,
		Bridge:     wire.bridge,
		GuestType:  guestType,
		CPU:        o.XenCPU,
		Append:     o.XenAppend,
		ConsoleLog: r.XenConsole,
		WorkDir:    o.RunDir,
		Logf:       func(f string, a ...any) { o.progress(f, a...) },
	}
	if tc.ESP && captureDir(o) != "" {
		os.Remove(filepath.Join(o.RunDir, xenctl.CaptureStatsName))
		xo.CaptureDir = abs(o.RunDir)
		xo.Pcaps = wire.pcaps
		for _, p := range wire.pcaps {
			if p != "" {
				r.Pcaps = append(r.Pcaps, abs(filepath.Join(o.RunDir, p)))
			}
		}
		keys := esp.KeysFromConfigs(o.Pattern, params[0].Seed, o.Streams, *params[0].ESP, *params[1].ESP)
		kp, sp, err := esp.ExportForPcap(r.Pcaps[0], keys)
		if err != nil {
			return fmt.Errorf("export keys: %w", err)
		}
		r.Keys, r.ESPSA = kp, sp
	}
	defer os.Remove(filepath.Join(o.RunDir, "dom0.initramfs.cpio"))
	o.progress("booting %s and %s as Xen %s domUs (%s, %s)", filepath.Base(o.Kernels[0]), filepath.Base(o.Kernels[1]), guestType, o.Topology, o.Test)
	pair, err := vm.StartXenPair(ctx, xo, cfgs[0], cfgs[1])
	if err != nil {
		return fmt.Errorf("start Xen guests: %w", err)
	}
	defer pair.Close()
	results := collect(o, r, pair)
	oa, ob := pair.Wait() // and the nested host, which wrote out the captures
	if len(r.Pcaps) > 0 {
		r.captureComplete = xenCaptureLossless(o.RunDir)
	}
	outcomes := [2]*vm.Outcome{oa, ob}
	for i, out := range outcomes {
		r.Guests[i].Outcome = string(out.Kind)
		r.Guests[i].Oopses = scanOopses(r.Guests[i].Console)
		r.Guests[i].setResult(results[i])
	}
	return verdict(ctx, o, r, results, outcomes)
}

// xenCaptureLossless reports whether dom0 wrote out every capture of the
// run in dir and dropped no frame crossing a vif.
func xenCaptureLossless(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, xenctl.CaptureStatsName))
	if err != nil {
		return false
	}
	var st xenctl.CaptureStats
	return json.Unmarshal(b, &st) == nil && st.Lossless()
}

// Dom0Kernel returns the kernel a nested Xen dom0 boots and its modules
// dir: path if given (its modules from /lib/modules/<release>), otherwise
// the newest /boot/vmlinuz-* whose /boot/config-* says CONFIG_XEN_DOM0=y
// (Debian's kernels do).
func Dom0Kernel(path string) (kernel, modules string, err error) {
	if path == "" {
		cands, _ := filepath.Glob("/boot/vmlinuz-*")
		sort.Sort(sort.Reverse(sort.StringSlice(cands)))
		for _, c := range cands {
			rel := strings.TrimPrefix(filepath.Base(c), "vmlinuz-")
			cfg, err := os.ReadFile("/boot/config-" + rel)
			if err == nil && strings.Contains(string(cfg), "\nCONFIG_XEN_DOM0=y\n") {
				path = c
				break
			}
		}
		if path == "" {
			return "", "", fmt.Errorf("no Xen dom0 kernel: no /boot/vmlinuz-* with CONFIG_XEN_DOM0=y; install linux-image-amd64 or give --dom0-kernel")
		}
	}
	info, err := vm.InspectKernel(path)
	if err != nil {
		return "", "", fmt.Errorf("dom0 kernel: %w", err)
	}
	if info.Format != vm.FormatBzImage {
		return "", "", fmt.Errorf("dom0 kernel %s: a %s; QEMU's multiboot loader hands Xen a bzImage: give one", path, info.Format)
	}
	if d := filepath.Join("/lib/modules", info.Release); info.Release != "" && isDir(d) {
		modules = d
	}
	return path, modules, nil
}

// validateXen checks the options a Xen run cannot honour.
func (o *Options) validateXen() error {
	if !oneOf(&o.XenGuestType, vm.XenPV, vm.XenPVH) {
		return fmt.Errorf("unknown Xen guest type %q: use pv or pvh", o.XenGuestType)
	}
	if o.Shell {
		return fmt.Errorf("--shell is not supported under Xen: the domU consoles are relayed by dom0, read-only")
	}
	if strings.ContainsAny(o.XenAppend, ",\n") {
		return fmt.Errorf("--xen-append %q: Xen's command line cannot hold commas or newlines (QEMU's multiboot loader splits modules at commas)", o.XenAppend)
	}
	return nil
}
