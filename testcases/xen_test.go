package testcases

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
	"github.com/kbisect/kbisect/testcases/proto"
)

// These tests run the pair as Xen PV domUs with netfront, in a Xen host
// nested under QEMU TCG (Debian's Xen 4.17 and Debian's kernel as dom0 and
// both domUs). One run takes 1.5-2 minutes on an idle 2-core machine: boot
// to both agents ready is about a minute.

func xenOptions(t *testing.T) Options {
	t.Helper()
	testenv.NeedXen(t)
	k, mods := testenv.DebianKernel(t)
	return Options{
		Test:         "natt-esp",
		Hypervisor:   HypervisorXen,
		Kernels:      [2]string{k, k},
		Modules:      [2]string{mods, mods},
		Duration:     20 * time.Second,
		Topology:     "nat",
		Crypto:       "cbc-aes-sha1",
		Pattern:      "zero",
		Capture:      true,
		InjectOffset: -1,
		RunDir:       t.TempDir(),
	}
}

func TestXenVerdicts(t *testing.T) {
	cases := []struct {
		name     string
		topology string
		// Streams: on a loaded machine one stream moved as little as 1.1
		// MiB in 20 s through netfront under nested TCG (12 Mbit/s when
		// idle), too close to the 1 MiB a pass needs; four moved at least
		// 6.6 MiB.
		streams int
		inject  int64
		verdict Verdict
		// wire is the capture's verdict; pcaps the captures (dom0's vifs).
		wire  string
		pcaps int
		// guest is the domU type; path what the report must say.
		guest, path string
	}{
		{name: "nat-pass", topology: "nat", streams: 4, inject: -1, verdict: Pass, wire: "clean", pcaps: 2, guest: "pv", path: "xen-pv/netfront"},
		{name: "direct-decap-fail", topology: "direct", streams: 1, inject: 300_000, verdict: Fail, wire: "decap", pcaps: 1, guest: "pv", path: "xen-pv/netfront"},
		// PVH domUs: Xen's HVM support on TCG's emulated SVM with nested paging.
		{name: "pvh-nat-pass", topology: "nat", streams: 4, inject: -1, verdict: Pass, wire: "clean", pcaps: 2, guest: "pvh", path: "xen-pvh/netfront"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := xenOptions(t)
			o.Topology, o.Streams, o.InjectOffset, o.XenGuestType = tc.topology, tc.streams, tc.inject, tc.guest
			if tc.inject >= 0 {
				o.InjectSide = proto.InjectReceiver
			}
			r, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s; boot %.1fs wall, %.1fs guest; %.2f Mbit/s", r.Verdict, r.Reason, r.BootWallSeconds, r.BootSeconds, r.ThroughputMbit)
			if r.Verdict != tc.verdict {
				t.Fatalf("verdict %s (%s), want %s; Xen console %s", r.Verdict, r.Reason, tc.verdict, r.XenConsole)
			}
			if r.Wire.Verdict != tc.wire || len(r.Pcaps) != tc.pcaps {
				t.Errorf("wire %s (%s) from %d pcaps, want %s from %d", r.Wire.Verdict, r.Wire.Detail, len(r.Pcaps), tc.wire, tc.pcaps)
			}
			if r.Path != tc.path {
				t.Errorf("path %q, want %s", r.Path, tc.path)
			}
			if tc.inject >= 0 {
				if len(r.Corruptions) != 1 || r.Corruptions[0].Offset != tc.inject {
					t.Errorf("corruptions %+v, want one at %d", r.Corruptions, tc.inject)
				}
			} else {
				if r.BytesVerified < minBytes || len(r.Corruptions) != 0 {
					t.Errorf("bytes_verified %d, corruptions %+v: want >= %d clean bytes", r.BytesVerified, r.Corruptions, minBytes)
				}
			}
			for _, g := range r.Guests {
				if g.KernelRelease == "" || len(g.XfrmState) != 2 {
					t.Errorf("%s: release %q, SAs %q: want the kernel's view of both SAs", g.Role, g.KernelRelease, g.XfrmState)
				}
				b, err := os.ReadFile(g.Console)
				if err != nil || !strings.Contains(string(b), "Booting kernel on Xen") {
					t.Errorf("%s console %s does not show a kernel booting on Xen (%v)", g.Role, g.Console, err)
				}
			}
			if tc.topology == "nat" {
				// The receiver saw the sender as the NAT's outside address.
				for _, sa := range r.Guests[1].XfrmState {
					if strings.Contains(sa, "dst 198.19.0.2") && !strings.Contains(sa, "src 198.19.0.1") {
						t.Errorf("receiver's inbound SA %q: want the NAT's address as source", sa)
					}
				}
			}
		})
	}
}

// TestXenStartError: a domU that xl cannot create is an error carrying xl's
// message, never a fail.
func TestXenStartError(t *testing.T) {
	o := xenOptions(t)
	o.Duration = 5 * time.Second
	// A bzImage whose header is fine (the host accepts it) but whose
	// compressed payload is damaged: xl's loader cannot unpack it.
	b, err := os.ReadFile(o.Kernels[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+64<<10; i++ {
		b[i] = 0
	}
	bad := filepath.Join(t.TempDir(), "vmlinuz-damaged")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	o.Kernels[0] = bad
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s after %.0fs: %s", r.Verdict, r.Seconds, r.Reason)
	if r.Verdict != Error {
		t.Fatalf("verdict %s (%s), want error", r.Verdict, r.Reason)
	}
	if !strings.Contains(r.Reason, "xl create failed") {
		t.Errorf("reason %q does not carry xl's message", r.Reason)
	}
}
