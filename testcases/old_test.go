package testcases_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
)

// The seed report's own kernels: 3.14.5 and 2.6.32 from the project's
// tarballs (shared/kernels), built by kbisect from tinyconfig (allnoconfig
// for 2.6.32) with the default fragments and xen-guest, one kernel for the
// QEMU and the Xen runs.

// noAESNI is the nested Xen machine's CPU without AES-NI and PCLMUL.
const noAESNI = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+svm,+npt"

var (
	oldMu     sync.Mutex
	oldBuilds = map[string]*kbuild.Artifact{}
)

// oldKernel builds the kernel of an old tarball once per test binary (and
// once per machine: kbisect's build cache keeps it), or fails the test.
func oldKernel(t testing.TB, tarball string) *kbuild.Artifact {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an old kernel (minutes); run without -short")
	}
	testenv.NeedQEMU(t)
	oldMu.Lock()
	defer oldMu.Unlock()
	if a := oldBuilds[tarball]; a != nil {
		return a
	}
	repo, commit := testenv.OldTree(t, tarball)
	frags, err := kconfigs.Select([]string{"xen-guest"}, true, "tinyconfig")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a, err := kbuild.Build(context.Background(), kbuild.Options{Repo: repo, Rev: commit, Config: "tinyconfig", Fragments: frags})
	if err != nil {
		t.Fatalf("build %s: %v", tarball, err)
	}
	t.Logf("%s: Linux %s (%s), fixups %v, %s", tarball, a.Release, map[bool]string{true: "build cache", false: "built"}[a.CacheHit], a.Fixups, time.Since(start).Round(time.Second))
	oldBuilds[tarball] = a
	return a
}

func oldOptions(t *testing.T, sender, receiver *kbuild.Artifact) testcases.Options {
	t.Helper()
	testenv.NeedRoot(t)
	o := testcases.Options{
		Test: "natt-esp", Duration: 15 * time.Second, Topology: "direct", Crypto: "cbc-aes-sha1",
		Pattern: "zero", Capture: true, InjectOffset: -1, RunDir: t.TempDir(),
	}
	for i, a := range []*kbuild.Artifact{sender, receiver} {
		if a != nil {
			o.Kernels[i], o.Modules[i] = testcases.BootImage(a)
		}
	}
	return o
}

// debianPeer puts Debian's 6.1 kernel in as the receiver.
func debianPeer(t *testing.T, o *testcases.Options) {
	k, mods := testenv.DebianKernel(t)
	o.Kernels[1], o.Modules[1] = k, mods
}

func runOld(t *testing.T, o testcases.Options) *testcases.Report {
	t.Helper()
	r, err := testcases.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s; boot %.1fs wall; %.1f Mbit/s; wire %s", r.Verdict, r.Reason, r.BootWallSeconds, r.ThroughputMbit, r.Wire.Verdict)
	return r
}

func wantReleases(t *testing.T, r *testcases.Report, releases ...string) {
	t.Helper()
	for i, g := range r.Guests {
		if g.KernelRelease != releases[i] {
			t.Errorf("%s runs Linux %q, want %s", g.Role, g.KernelRelease, releases[i])
		}
	}
}

// TestOldKernelsQEMU: the seed's kernels pass natt-esp as QEMU pairs and
// as the sender of a mixed pair with Debian's 6.1 receiving.
func TestOldKernelsQEMU(t *testing.T) {
	k314 := oldKernel(t, testenv.Tarball3_14)
	k2632 := oldKernel(t, testenv.Tarball2_6)
	for _, tc := range []struct {
		name             string
		sender, receiver *kbuild.Artifact
		debian           bool
		topology         string
	}{
		{name: "3.14.5-pair", sender: k314, receiver: k314, topology: "nat"},
		{name: "2.6.32-pair", sender: k2632, receiver: k2632, topology: "direct"},
		{name: "3.14.5-to-6.1", sender: k314, debian: true, topology: "direct"},
		{name: "2.6.32-to-6.1", sender: k2632, debian: true, topology: "nat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := oldOptions(t, tc.sender, tc.receiver)
			o.Topology = tc.topology
			want := []string{tc.sender.Release, ""}
			if tc.debian {
				debianPeer(t, &o)
			} else {
				want[1] = tc.receiver.Release
			}
			r := runOld(t, o)
			if r.Verdict != testcases.Pass || r.Wire.Verdict != "clean" {
				t.Fatalf("verdict %s (%s), wire %s (%s; missing %q): want a clean pass", r.Verdict, r.Reason, r.Wire.Verdict, r.Wire.Detail, r.Wire.Missing)
			}
			if want[1] == "" {
				want[1] = r.Guests[1].KernelRelease // Debian's, whatever its ABI number
				if !strings.HasPrefix(want[1], "6.1") {
					t.Errorf("receiver runs %q, want Debian's 6.1", want[1])
				}
			}
			wantReleases(t, r, want...)
			for _, g := range r.Guests {
				if g.AuthFailures != 0 {
					t.Errorf("%s dropped %d ESP packets for a bad ICV", g.Role, g.AuthFailures)
				}
			}
		})
	}
}

// TestOldKernelsXen runs the seed's kernels as Xen PV domUs with netfront,
// as the report's hosts were. With AES-NI in the guests' CPU both corrupt
// ESP payloads (issue #15: under Xen PV their read_cr0() returns a cached
// CR0 whose TS bit xen_clts() never clears, so irq_fpu_usable() lets
// softirq crypto use the FPU inside another kernel FPU section); without
// AES-NI 2.6.32 is clean, and 3.14.5 booted with eagerfpu=on (which does
// not look at TS) is clean, so the self-tests run there.
func TestOldKernelsXen(t *testing.T) {
	testenv.NeedXen(t)
	k314 := oldKernel(t, testenv.Tarball3_14)
	k2632 := oldKernel(t, testenv.Tarball2_6)
	type want struct {
		verdict testcases.Verdict
		wire    string // "" for any
	}
	for _, tc := range []struct {
		name             string
		sender, receiver *kbuild.Artifact
		topology, cpu    string
		append           string
		inject           int64
		side             string
		want             want
	}{
		// The bug, in both kernels and across them. A failing run stops at
		// its first corruption; four streams make it come within seconds.
		{name: "3.14.5-aesni-fail", sender: k314, receiver: k314, topology: "direct", want: want{verdict: testcases.Fail}},
		{name: "2.6.32-aesni-fail", sender: k2632, receiver: k2632, topology: "nat", want: want{verdict: testcases.Fail}},
		{name: "3.14.5-to-2.6.32-aesni-fail", sender: k314, receiver: k2632, topology: "direct", want: want{verdict: testcases.Fail}},
		// Clean beds, in both topologies.
		{name: "2.6.32-no-aesni-pass", sender: k2632, receiver: k2632, topology: "nat", cpu: noAESNI, want: want{testcases.Pass, "clean"}},
		// Self-tests on an old pair made clean by eagerfpu=on: the injected
		// byte is the run's only corruption, and the wire tells the side.
		{name: "3.14.5-eagerfpu-decap", sender: k314, receiver: k314, topology: "direct", append: "eagerfpu=on",
			inject: 400_000, side: proto.InjectReceiver, want: want{testcases.Fail, "decap"}},
		{name: "3.14.5-eagerfpu-encap", sender: k314, receiver: k314, topology: "nat", append: "eagerfpu=on",
			inject: 400_001, side: proto.InjectSender, want: want{testcases.Fail, "encap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := oldOptions(t, tc.sender, tc.receiver)
			o.Hypervisor, o.Topology, o.XenCPU, o.Append = testcases.HypervisorXen, tc.topology, tc.cpu, tc.append
			o.Streams, o.Duration = 4, 20*time.Second
			if tc.want.verdict == testcases.Fail && tc.side == "" {
				// The bug: stop at its first corruption, which four
				// streams bring within seconds. Self-tests run to the end,
				// so that the capture holds the stream's end and can tell
				// decap from a copy delivered later.
				o.StopOnFail, o.Duration = true, 2*time.Minute
			}
			if tc.inject >= 0 && tc.side != "" {
				o.InjectOffset, o.InjectSide = tc.inject, tc.side
			}
			r := runOld(t, o)
			if r.Verdict != tc.want.verdict {
				t.Fatalf("verdict %s (%s), want %s; Xen console %s", r.Verdict, r.Reason, tc.want.verdict, r.XenConsole)
			}
			if tc.want.wire != "" && r.Wire.Verdict != tc.want.wire {
				t.Errorf("wire %s (%s), want %s", r.Wire.Verdict, r.Wire.Detail, tc.want.wire)
			}
			if r.Path != "xen-pv/netfront" {
				t.Errorf("path %q, want xen-pv/netfront", r.Path)
			}
			wantReleases(t, r, tc.sender.Release, tc.receiver.Release)
			for _, g := range r.Guests {
				aes := slices.Contains(g.SIMD, "aes")
				if aes != (tc.cpu == "") {
					t.Errorf("%s's SIMD flags %v: AES-NI there %v, want %v", g.Role, g.SIMD, aes, tc.cpu == "")
				}
				if slices.Contains(g.SIMD, "eagerfpu") != (tc.append == "eagerfpu=on") {
					t.Errorf("%s's SIMD flags %v: eagerfpu wrong for --append %q", g.Role, g.SIMD, tc.append)
				}
			}
			if tc.inject >= 0 && tc.side != "" {
				if len(r.Corruptions) != 1 || r.Corruptions[0].Offset != tc.inject {
					t.Errorf("corruptions %+v, want only the injected one at %d", r.Corruptions, tc.inject)
				}
			}
		})
	}
}

// TestOldKernelXenPVHRefused: 3.14.5 has no PVH entry (Linux 4.11+): a
// PVH run is refused before anything boots, as an error, never a verdict.
func TestOldKernelXenPVHRefused(t *testing.T) {
	testenv.NeedXen(t)
	k314 := oldKernel(t, testenv.Tarball3_14)
	o := oldOptions(t, k314, k314)
	o.Hypervisor, o.XenGuestType = testcases.HypervisorXen, "pvh"
	start := time.Now()
	r := runOld(t, o)
	if r.Verdict != testcases.Error || !strings.Contains(r.Reason, "cannot run as a Xen PVH domU") || strings.Contains(r.Reason, "\n") {
		t.Fatalf("verdict %s (%q), want a one-line error refusing PVH", r.Verdict, r.Reason)
	}
	if _, err := os.Stat(filepath.Join(o.RunDir, "xen.console")); err == nil || time.Since(start) > 30*time.Second {
		t.Errorf("the nested host was started (%s): the refusal must come first", time.Since(start).Round(time.Second))
	}
}
