// Package testcases runs kbisect's tests on a pair of guests: it prepares the
// initramfs and the wire, boots both guests with the kernels under test,
// collects what their agents report and turns it into a verdict with
// evidence. Each testcase has a guest side (package agent, run by the agent in the guest)
// and a host side here (parameters, verdict).
package testcases

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/failsig"
	"github.com/kbisect/kbisect/internal/fsutil"

	"github.com/kbisect/kbisect/testcases/proto"
)

// Testcase is the host side of one test.
type Testcase struct {
	Name        string
	Description string
	// ESP says the test runs inside ESP-in-UDP SAs.
	ESP bool
	// Modules are the kernel modules a modular kernel needs for the test.
	Modules []string
}

// baseModules are needed by every test on a modular kernel.
var baseModules = []string{"virtio_pci", "virtio_net"}

// espModules are the modules of ESP-in-UDP transport mode with every suite.
var espModules = []string{
	"esp4", "xfrm_user", "xfrm_algo", "authenc", "echainiv", "seqiv", "geniv",
	"cbc", "ecb", "aes_generic", "aesni_intel", "sha1_generic", "sha256_generic", "hmac",
	// SIMD versions: QEMU TCG emulates SSSE3, AVX2 and PCLMUL with -cpu max.
	"sha1_ssse3", "sha256_ssse3", "ghash_clmulni_intel",
	"gcm", "ghash_generic", "ctr", "crypto_null",
	// echainiv and seqiv draw their salt from stdrng.
	"drbg", "jitterentropy_rng",
}

// Registry lists the testcases by name.
var Registry = map[string]Testcase{
	"natt-esp": {
		Name:        "natt-esp",
		Description: "TCP streams in ESP-in-UDP (NAT-T, port 4500) transport mode; every payload byte checked",
		ESP:         true,
		Modules:     append(append([]string{}, baseModules...), espModules...),
	},
	"tcp": {
		Name:        "tcp",
		Description: "the same TCP streams without IPsec: the throughput baseline",
		Modules:     baseModules,
	},
}

// Names returns the registered testcases, sorted.
func Names() []string {
	var n []string
	for k := range Registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Options describe one run.
type Options struct {
	Test string
	// Kernels of guest 0 (the sender, behind the NAT) and guest 1 (the
	// receiver); Modules their module trees (/lib/modules/<release>), empty
	// for a kernel with everything built in.
	Kernels [2]string
	Modules [2]string
	// Duration of the traffic.
	Duration time.Duration
	// Topology is "direct" or "nat".
	Topology string
	// Crypto names a proto.Suites entry.
	Crypto  string
	Streams int
	// Pattern is "zero" or "prng".
	Pattern string
	// WriteSizes is how the sender writes: proto.WriteSizesFixed (empty:
	// the default) or proto.WriteSizesVary.
	WriteSizes string
	MTU        int
	// RunDir receives console logs, captures and keys; it is created.
	RunDir string
	// Capture records the wire (pcap) and analyses it.
	Capture bool
	// InjectOffset >= 0 corrupts that byte of stream 0 on InjectSide.
	InjectOffset int64
	InjectSide   string
	// FailOnOops turns a kernel oops or WARN in a guest console into fail.
	FailOnOops bool
	// StopOnFail ends the traffic at the first corruption.
	StopOnFail bool
	// SIMDCanary runs a thread in each agent that holds known values in
	// the SIMD registers and fails the run when they change under it.
	SIMDCanary bool
	// Shell ends the receiver in a shell on this terminal instead of
	// powering off (the sender powers off as usual).
	Shell bool
	// Append is added to both guests' kernel command lines.
	Append string
	// Hypervisor is HypervisorQEMU (default) or HypervisorXen (the pair as
	// Xen domUs with netfront, in a Xen host nested under QEMU).
	Hypervisor string
	// XenGuestType is "pv" (default) or "pvh", under Xen.
	XenGuestType string
	// XenCPU is the nested Xen machine's QEMU CPU model (empty:
	// vm.DefaultXenCPU); XenAppend is added to Xen's command line.
	XenCPU    string
	XenAppend string
	// Dom0Kernel is the nested Xen host's dom0 kernel; empty finds one in
	// /boot (see Dom0Kernel).
	Dom0Kernel string
	// Accel is "auto", "tcg" or "kvm".
	Accel    string
	MemoryMB int
	// Progress, if set, receives one line per phase of the run: boot,
	// guests ready, what the agents log.
	Progress func(string)
	// Status, if set, receives the run's running count of verified bytes,
	// about every second: a line redrawn in place on a terminal.
	Status func(string)
}

// minBytes is the least the receiver must verify for a pass to mean
// anything: a pair that moved less did not really run the test.
const minBytes = 1 << 20

// Validate checks the options a user gave and fills in defaults.
func (o *Options) Validate() error {
	if o.Kernels[0] == "" {
		return errors.New("no kernel: give --kernel IMAGE (a bzImage such as /boot/vmlinuz-*, or a vmlinux)")
	}
	if o.Kernels[1] == "" {
		o.Kernels[1] = o.Kernels[0]
		if o.Modules[1] == "" {
			o.Modules[1] = o.Modules[0]
		}
	}
	if o.RunDir == "" {
		return errors.New("no run directory")
	}
	// A kernel that is not there is bad input, refused before a run
	// directory is made, not an error report of a run.
	for i, flag := range []string{"--kernel", "--peer-kernel"} {
		if st, err := os.Stat(o.Kernels[i]); err != nil || st.IsDir() {
			return fmt.Errorf("%s %s: no such kernel image: give a bzImage (such as /boot/vmlinuz-*) or a vmlinux", flag, o.Kernels[i])
		}
	}
	return o.ValidateTest()
}

// ValidateTest checks the options of the test itself (not the kernels nor
// where the run goes) and fills in defaults: for commands that build the
// kernels first, so bad input fails before a long build.
func (o *Options) ValidateTest() error {
	if _, ok := Registry[o.Test]; !ok {
		return fmt.Errorf("unknown test %q: choose one of %s", o.Test, strings.Join(Names(), ", "))
	}
	if o.Duration <= 0 {
		return fmt.Errorf("duration %v: give a positive --duration such as 60s", o.Duration)
	}
	switch o.Topology {
	case "":
		o.Topology = "direct"
	case "direct", "nat":
	default:
		return fmt.Errorf("unknown topology %q: use direct or nat", o.Topology)
	}
	if o.Crypto == "" {
		o.Crypto = "cbc-aes-sha1"
	}
	if _, ok := proto.Suites[o.Crypto]; !ok {
		var names []string
		for k := range proto.Suites {
			names = append(names, k)
		}
		sort.Strings(names)
		return fmt.Errorf("unknown crypto %q: choose one of %s", o.Crypto, strings.Join(names, ", "))
	}
	if o.Streams == 0 {
		o.Streams = 1
	}
	if o.Streams < 1 || o.Streams > 64 {
		return fmt.Errorf("streams %d: use 1..64", o.Streams)
	}
	if !oneOf(&o.Pattern, "zero", "prng") {
		return fmt.Errorf("unknown pattern %q: use zero or prng", o.Pattern)
	}
	if !oneOf(&o.WriteSizes, proto.WriteSizesFixed, proto.WriteSizesVary) {
		return fmt.Errorf("unknown write sizes %q: use fixed or vary", o.WriteSizes)
	}
	if o.InjectOffset >= 0 && o.InjectSide == "" {
		o.InjectSide = proto.InjectReceiver
	}
	switch o.InjectSide {
	case "", proto.InjectReceiver, proto.InjectSender:
	case proto.InjectAuth:
		if !Registry[o.Test].ESP {
			return fmt.Errorf("--inject-side auth needs an ESP test (natt-esp)")
		}
	default:
		return fmt.Errorf("unknown injection side %q: use receiver, sender or auth", o.InjectSide)
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 512
	}
	switch o.Hypervisor {
	case "":
		o.Hypervisor = HypervisorQEMU
	case HypervisorQEMU:
		if o.XenCPU != "" || o.XenAppend != "" {
			return errors.New("--xen-cpu and --xen-append need --hypervisor xen")
		}
	case HypervisorXen:
		if err := o.validateXen(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown hypervisor %q: use qemu or xen", o.Hypervisor)
	}
	return nil
}

// oneOf sets an empty *v to the first of values (the default) and reports
// whether *v is one of them.
func oneOf(v *string, values ...string) bool {
	if *v == "" {
		*v = values[0]
	}
	return slices.Contains(values, *v)
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

func (o *Options) status(format string, args ...any) {
	if o.Status != nil {
		o.Status(fmt.Sprintf(format, args...))
	}
}

// guestParams builds both agents' parameters.
func guestParams(o *Options, tc Testcase, a Addressing) ([2]*proto.Params, error) {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return [2]*proto.Params{}, fmt.Errorf("draw seed: %w", err)
	}
	var ps [2]*proto.Params
	for i, role := range []string{proto.RoleSender, proto.RoleReceiver} {
		ps[i] = &proto.Params{
			Role:         role,
			Test:         tc.Name,
			Addr:         a.Addr[i],
			Gateway:      a.Gateway[i],
			Peer:         a.PeerView[i],
			MTU:          o.MTU,
			Streams:      o.Streams,
			Duration:     proto.Duration(o.Duration),
			Pattern:      o.Pattern,
			WriteSizes:   o.WriteSizes,
			Seed:         binary.LittleEndian.Uint64(seed[:]),
			InjectOffset: -1,
			StopOnFail:   o.StopOnFail,
			SIMDCanary:   o.SIMDCanary,
			// One terminal, one shell: the receiver's.
			Shell: o.Shell && role == proto.RoleReceiver,
		}
		if o.InjectOffset >= 0 && (role == proto.RoleSender) == (o.InjectSide == proto.InjectSender || o.InjectSide == proto.InjectAuth) {
			ps[i].InjectOffset, ps[i].InjectSide = o.InjectOffset, o.InjectSide
		}
	}
	if tc.ESP {
		suite := proto.Suites[o.Crypto]
		fwd, rev, err := sessionKeys(suite)
		if err != nil {
			return ps, err
		}
		cfgs := espConfigs(suite, a, fwd, rev)
		ps[0].ESP, ps[1].ESP = cfgs[0], cfgs[1]
	}
	return ps, nil
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}

// scanOopses returns the console lines that show a kernel bug.
func scanOopses(console string) []string {
	b, err := os.ReadFile(console)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if failsig.IsOops(line) {
			out = append(out, strings.TrimSpace(line))
		}
		if len(out) >= 10 {
			break
		}
	}
	return out
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
