package main

import (
	"strings"
	"testing"

	"github.com/kbisect/kbisect/vm/xenctl"
)

func TestXLConfig(t *testing.T) {
	d := xenctl.DomU{
		Name: "sender", Type: "pvh", Kernel: "/kbisect/domu/sender.kernel", Ramdisk: "/kbisect/domu/sender.initrd",
		Cmdline: "console=hvc0 panic=-1", MemoryMB: 256, VCPUs: 1, CPUs: "1",
		MAC: "52:54:00:01:02:03", Bridge: "xbr-in", Vif: "vif-a",
	}
	cfg := xlConfig(d)
	for _, want := range []string{
		`name = "sender"`, `type = "pvh"`, `kernel = "/kbisect/domu/sender.kernel"`,
		`ramdisk = "/kbisect/domu/sender.initrd"`, `cmdline = "console=hvc0 panic=-1"`,
		"memory = 256", "vcpus = 1", `cpus = "1"`,
		"'mac=52:54:00:01:02:03,bridge=xbr-in,vifname=vif-a,script=",
		`on_reboot = "destroy"`, `on_crash = "destroy"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("xl config lacks %q:\n%s", want, cfg)
		}
	}
}
