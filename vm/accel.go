package vm

import (
	"fmt"
	"os"
	"sync"
)

// sysModuleDir is where the host's loaded modules show; a variable for tests.
var sysModuleDir = "/sys/module"

// AccelChoice is the accelerator DetectAccel picked and why.
type AccelChoice struct {
	// Accel is AccelKVM or AccelTCG.
	Accel string
	// Reason says why KVM is not used; empty for KVM.
	Reason string
}

// DetectAccel decides whether KVM can run ordinary guests on this host. It
// wants /dev/kvm usable and a hardware KVM module (kvm_intel or kvm_amd):
// some hosts expose /dev/kvm through another module (kvm_pvm in nested
// cloud sandboxes) on which ordinary guests hang after "Booting from ROM".
// Anything else is TCG, with the reason.
func DetectAccel() AccelChoice {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelChoice{Accel: AccelTCG, Reason: fmt.Sprintf("KVM unavailable (%v)", err)}
	}
	f.Close()
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(sysModuleDir + "/" + m); err == nil {
			return AccelChoice{Accel: AccelKVM}
		}
	}
	other := "no kvm_intel or kvm_amd module"
	if _, err := os.Stat(sysModuleDir + "/kvm_pvm"); err == nil {
		other = "/dev/kvm is provided by kvm_pvm, not kvm_intel/kvm_amd"
	}
	return AccelChoice{Accel: AccelTCG, Reason: other + ": ordinary KVM guests hang on such hosts"}
}

var (
	accelOnce   sync.Once
	accelChoice AccelChoice
)

// resolveAccel turns AccelAuto into a concrete accelerator, telling logf
// about a TCG fallback once per process.
func resolveAccel(accel string, logf func(string, ...any)) string {
	if accel != AccelAuto {
		return accel
	}
	first := false
	accelOnce.Do(func() {
		accelChoice = DetectAccel()
		first = true
	})
	if first && accelChoice.Accel == AccelTCG {
		logf("using TCG (software emulation), not KVM: %s", accelChoice.Reason)
	}
	return accelChoice.Accel
}
