package testcases

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
)

// These tests boot real guest pairs (Debian's kernel under QEMU) and run the
// real agent: a pass moves and checks real bytes, a fail comes from a real
// corruption injected by the agent's self-test hook.

func baseOptions(t *testing.T) Options {
	t.Helper()
	testenv.NeedRoot(t)
	k, mods := testenv.DebianKernel(t)
	return Options{
		Test:         "natt-esp",
		Kernels:      [2]string{k, k},
		Modules:      [2]string{mods, mods},
		Duration:     8 * time.Second,
		Topology:     "direct",
		Crypto:       "cbc-aes-sha1",
		Pattern:      "prng",
		Capture:      true,
		InjectOffset: -1,
		RunDir:       t.TempDir(),
	}
}

func TestRunVerdicts(t *testing.T) {
	cases := []struct {
		name       string
		topology   string
		inject     int64
		injectSide string
		verdict    Verdict
		wire       string
		stop       bool // StopOnFail, as a bisection runs: no FIN on the wire
		sizes      string
	}{
		{name: "direct-clean", topology: "direct", inject: -1, verdict: Pass, wire: "clean"},
		{name: "nat-decap", topology: "nat", inject: 1_000_000, injectSide: proto.InjectReceiver, verdict: Fail, wire: "decap"},
		{name: "direct-encap", topology: "direct", inject: 1_500_001, injectSide: proto.InjectSender, verdict: Fail, wire: "encap"},
		{name: "direct-decap-stop", topology: "direct", inject: 700_000, injectSide: proto.InjectReceiver, verdict: Fail, wire: "decap", stop: true},
		// Varied writes, each ending its own segment: the corruption is
		// found as with fixed ones, and the wire shows many more sizes.
		{name: "direct-encap-vary", topology: "direct", inject: 900_001, injectSide: proto.InjectSender, verdict: Fail, wire: "encap", sizes: proto.WriteSizesVary},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions(t)
			o.Topology, o.InjectOffset, o.InjectSide, o.StopOnFail, o.WriteSizes = tc.topology, tc.inject, tc.injectSide, tc.stop, tc.sizes
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != tc.verdict {
				t.Fatalf("verdict %s (%s), want %s", r.Verdict, r.Reason, tc.verdict)
			}
			// A stopped run verified up to its corruption, a full one more.
			want := int64(minBytes)
			if tc.stop {
				want = tc.inject
			}
			if r.BytesVerified < want {
				t.Errorf("bytes_verified %d, want >= %d", r.BytesVerified, want)
			}
			if r.BootSeconds <= 0 || r.ThroughputMbit <= 0 {
				t.Errorf("boot_seconds %v, throughput %v: want both > 0", r.BootSeconds, r.ThroughputMbit)
			}
			if tc.inject >= 0 {
				if len(r.Corruptions) != 1 || r.Corruptions[0].Offset != tc.inject || r.Corruptions[0].Length != 1 {
					t.Errorf("corruptions %+v, want one byte at %d", r.Corruptions, tc.inject)
				}
			} else if len(r.Corruptions) != 0 {
				t.Errorf("corruptions %+v on a clean run", r.Corruptions)
			}
			if r.Wire.Verdict != tc.wire {
				t.Errorf("wire %s (%s), want %s", r.Wire.Verdict, r.Wire.Detail, tc.wire)
			}
			// What the run tested per second: ESP packets, mostly full
			// ones one way and ACKs the other.
			var sized int64
			for _, s := range r.Wire.Sizes {
				sized += s.Packets
			}
			if r.Wire.ESPPerSecond < 100 || r.Wire.DistinctSizes < 2 || sized == 0 || sized > r.Wire.ESP {
				t.Errorf("wire: %.0f ESP packets/s, %d sizes, size mix %+v of %d ESP packets: want a rate, sizes and a mix of at most the packets",
					r.Wire.ESPPerSecond, r.Wire.DistinctSizes, r.Wire.Sizes, r.Wire.ESP)
			}
			// cbc-aes pads to 16 bytes: about 90 ESP sizes fit in an MTU
			// of 1500. Fixed 64 KiB writes show 10-20 of them.
			if tc.sizes == proto.WriteSizesVary && r.Wire.DistinctSizes < 60 {
				t.Errorf("varied writes gave %d distinct ESP sizes (mix %+v), want >= 60", r.Wire.DistinctSizes, r.Wire.Sizes)
			}
			if tc.topology == "direct" {
				checkWithTshark(t, r, tc.stop)
			}
			wantPcaps := map[string]int{"direct": 1, "nat": 2}[tc.topology]
			if len(r.Pcaps) != wantPcaps {
				t.Errorf("pcaps %v, want %d", r.Pcaps, wantPcaps)
			}
			for _, g := range r.Guests {
				if g.KernelRelease == "" || len(g.XfrmState) != 2 {
					t.Errorf("%s: release %q, SAs %q: want the kernel's view of both SAs", g.Role, g.KernelRelease, g.XfrmState)
				}
				for _, sa := range g.XfrmState {
					if !strings.Contains(sa, "auth hmac(sha1) trunc 96") || !strings.Contains(sa, "encap espinudp") {
						t.Errorf("%s runs %q, want hmac(sha1)-96 in ESP-in-UDP", g.Role, sa)
					}
				}
			}
		})
	}
}

// TestRunErrors: infrastructure and kernel trouble is error, never fail.
func TestRunErrors(t *testing.T) {
	notKernel := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(notKernel, []byte("this is not a kernel\n"), 0o644)
	cases := []struct {
		name   string
		modify func(t *testing.T, o *Options)
		reason string
	}{
		{"not-a-kernel", func(t *testing.T, o *Options) { o.Kernels[0] = notKernel }, "not a Linux kernel image"},
		// No initramfs init: the kernel falls back to mounting a root it
		// does not have and panics.
		{"panic-at-boot", func(t *testing.T, o *Options) { o.Append = "rdinit=/nonexistent" }, "panic"},
		{"no-esp-in-kernel", func(t *testing.T, o *Options) { o.Modules = [2]string{modulesWithout(t, o.Modules[0], "esp4"), ""} }, "esp4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions(t)
			tc.modify(t, &o)
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Error {
				t.Fatalf("verdict %s (%s), want error", r.Verdict, r.Reason)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", r.Reason, tc.reason)
			}
		})
	}
}

// modulesWithout returns a copy of a modules tree without the named module,
// re-indexed with depmod: a kernel that lacks ESP.
func modulesWithout(t *testing.T, modules, drop string) string {
	t.Helper()
	rel := filepath.Base(modules)
	root := t.TempDir()
	dst := filepath.Join(root, "lib", "modules", rel)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	// A tree of symlinks: cheap, and depmod and the image builder read
	// through them.
	if out, err := exec.Command("cp", "-as", modules, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy modules: %v %s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(dst, "kernel", "net", "ipv4", drop+".ko*"))
	if len(matches) == 0 {
		t.Fatalf("no %s module under %s", drop, dst)
	}
	for _, m := range matches {
		os.Remove(m)
	}
	if out, err := exec.Command("depmod", "-b", root, rel).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v %s", err, out)
	}
	return dst
}

type benchPair struct{ kernels, modules [2]string }

// benchKernel is the kernel the benchmarks boot: $KBISECT_BENCH_KERNEL (a
// kbisect build, everything built in) or Debian's.
func benchKernel(b *testing.B) benchPair {
	if k := os.Getenv("KBISECT_BENCH_KERNEL"); k != "" {
		return benchPair{kernels: [2]string{k, k}}
	}
	k, mods := testenv.DebianKernel(b)
	return benchPair{[2]string{k, k}, [2]string{mods, mods}}
}

// checkWithTshark opens the run's capture in real tshark with the exported
// Wireshark esp_sa file (as a user would: in tshark's config dir) and checks
// that tshark decrypts and authenticates the ESP and sees exactly the stream
// the receiver verified (at least that when the run stopped early, with
// bytes still in flight).
func checkWithTshark(t *testing.T, r *Report, stopped bool) {
	t.Helper()
	testenv.NeedTshark(t)
	// The README's steps: the run's esp_sa in ~/.config/wireshark, and
	// the two ESP preferences that tshark 4.0 has off by default.
	home := t.TempDir()
	sa, err := os.ReadFile(r.ESPSA)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(home, ".config", "wireshark"), 0o700)
	os.WriteFile(filepath.Join(home, ".config", "wireshark", "esp_sa"), sa, 0o600)
	readme := []string{"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}
	// What kbisect analyze prints: the SAs on the command line, no file.
	keys, err := esp.LoadKeys(r.Keys)
	if err != nil {
		t.Fatal(err)
	}
	printed, err := esp.TsharkArgs(keys)
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{"README esp_sa": readme, "analyze's command": printed} {
		env := []string{"HOME=" + home}
		if name != "README esp_sa" {
			env = []string{"HOME=" + t.TempDir()} // no esp_sa file
		}
		checkTsharkDecrypts(t, name, r, stopped, args, env)
	}
}

// checkTsharkDecrypts runs tshark with args on the run's capture and checks
// that it decrypted every stream byte the receiver verified.
func checkTsharkDecrypts(t *testing.T, name string, r *Report, stopped bool, args, env []string) {
	t.Helper()
	cmd := exec.Command("tshark", append(append([]string{"-r", r.Pcaps[0]}, args...),
		"-Y", "tcp.dstport == 5001 && tcp.len > 0", "-T", "fields", "-e", "tcp.seq", "-e", "tcp.len", "-e", "esp.icv_good")...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: tshark: %v", name, err)
	}
	var end, segs int64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			continue
		}
		seq, _ := strconv.ParseInt(f[0], 10, 64)
		n, _ := strconv.ParseInt(f[1], 10, 64)
		if len(f) > 2 && f[2] != "" && f[2] != "1" && f[2] != "True" {
			t.Errorf("%s: tshark says the ICV of segment seq %d is not good: %q", name, seq, f[2])
		}
		end = max(end, seq+n)
		segs++
	}
	if segs == 0 {
		t.Fatalf("%s: tshark decrypted no TCP segment:\n%s", name, out)
	}
	// Relative sequence numbers: the first payload byte is 1.
	if got := end - 1; got != r.BytesVerified && (!stopped || got < r.BytesVerified) {
		t.Errorf("%s: tshark sees %d stream bytes in %d segments, the receiver verified %d", name, got, segs, r.BytesVerified)
	}
	t.Logf("%s: tshark decrypted %d segments, %d bytes", name, segs, end-1)
}

// TestRunAuthFailure: an ESP packet whose ICV does not verify is dropped
// by the receiver's kernel, so no corrupted byte reaches the application:
// the run still fails, and says it was authentication. The sender's agent
// forges one (--inject-side auth); with --stop-on-fail the run ends at it.
func TestRunAuthFailure(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop=%v", stop), func(t *testing.T) {
			o := baseOptions(t)
			o.InjectOffset, o.InjectSide, o.StopOnFail = 2_000_000, proto.InjectAuth, stop
			if stop {
				o.Duration = time.Minute // it must end long before
			}
			start := time.Now()
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Fail || !strings.Contains(r.Reason, "1 ESP packet(s) from the sender failed authentication at the receiver") {
				t.Fatalf("verdict %s (%s), want a fail for one authentication failure", r.Verdict, r.Reason)
			}
			if len(r.Corruptions) != 0 || r.Guests[1].AuthFailures != 1 || r.Guests[0].AuthFailures != 0 {
				t.Errorf("corruptions %v, auth failures sender %d receiver %d: want none, 0, 1", r.Corruptions, r.Guests[0].AuthFailures, r.Guests[1].AuthFailures)
			}
			if r.Wire.ICVFailures != 1 {
				t.Errorf("the capture has %d ICV failures, want the forged packet's 1", r.Wire.ICVFailures)
			}
			if stop && time.Since(start) > 45*time.Second {
				t.Errorf("a stopping run took %s: it should end at the failure", time.Since(start).Round(time.Second))
			}
		})
	}
}
