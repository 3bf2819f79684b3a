package lava

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// kernelAppend is the guests' kernel command line under LAVA: as for a
// local run (see package vm), plus loglevel=5, which keeps warnings, oopses
// and panics on the console but not the boot chatter that would interleave
// with the agent's event lines LAVA reads.
var kernelAppend = []string{
	"console=ttyS0,115200",
	"panic=-1", // with -no-reboot QEMU exits, and LAVA sees the end at once
	"tsc=reliable",
	"no_timer_check",
	"i8042.noaux", "i8042.nokbd", "i8042.nopnp",
	"random.trust_cpu=on",
	"loglevel=5",
}

// The monitors' regular expressions (Python re, matched by pexpect on the
// console). The test starts at the agent's first event and ends at its
// result or error; its ready event becomes a LAVA test case per role.
const (
	monitorStart   = `KBISECT-EVENT`
	monitorEnd     = `"type":"(result|error)"`
	monitorPattern = `"type":"(?P<result>ready)","role":"(?P<test_case_id>[a-z]+)"`
)

// guestJob is what one role of the MultiNode job boots.
type guestJob struct {
	Role    string
	Kernel  string // URL
	Initrd  string // URL
	Append  string
	Network string // the -net backend joining the guests, e.g. socket,mcast=...
	CPU     string // the -cpu model (vm.TCGCPU of the kernel's release)
}

// jobSpec is one run as a MultiNode job.
type jobSpec struct {
	Name       string
	DeviceType string
	Guests     []guestJob
	// Test is how long the traffic runs; the timeouts follow from it.
	Test     time.Duration
	MemoryMB int
	// Priority is LAVA's job priority, 0-100.
	Priority int
	// Visibility: see Executor.Visibility.
	Visibility string
}

// visibility is LAVA's job visibility for v (see Executor.Visibility):
// "personal" (also for ""), "public", or {group: [names]}.
func visibility(v string) (any, error) {
	switch {
	case v == "" || v == "personal":
		return "personal", nil
	case v == "public":
		return "public", nil
	case strings.HasPrefix(v, "group:"):
		var groups []string
		for _, g := range strings.Split(strings.TrimPrefix(v, "group:"), ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
		if len(groups) > 0 {
			return m{"group": groups}, nil
		}
	}
	return nil, fmt.Errorf("--lava-visibility %q: use personal (only you), public, or group:NAME[,NAME...]", v)
}

type m = map[string]any

func minutes(d time.Duration) m {
	return m{"minutes": int(math.Ceil(d.Minutes()))}
}

// definition renders the job as JSON, which LAVA reads as YAML.
func (s *jobSpec) definition() (string, error) {
	if len(s.Guests) == 0 {
		return "", fmt.Errorf("job %s: no guests", s.Name)
	}
	vis, err := visibility(s.Visibility)
	if err != nil {
		return "", err
	}
	testTimeout := s.Test + 5*time.Minute
	roles := m{}
	var actions []m
	var names []string
	for _, g := range s.Guests {
		names = append(names, g.Role)
		roles[g.Role] = m{
			"device_type": s.DeviceType,
			"count":       1,
			// The device template's -net nic,... -net {{netdevice}}
			// puts the NIC and the socket backend on one hub. Its
			// MAC is the same on every device: the agents set
			// their own (proto.Params.MAC).
			"context": m{
				"arch":      "amd64",
				"netdevice": g.Network,
				"memory":    s.MemoryMB,
				// -no-reboot: the agent's restart (and panic=-1)
				// ends QEMU. -cpu max (AES-NI and PCLMUL under TCG)
				// less what the kernel's release cannot take.
				"extra_options": []string{"-no-reboot", "-cpu " + g.CPU, "-smp 1"},
			},
		}
		actions = append(actions, m{"deploy": m{
			"role":    []string{g.Role},
			"to":      "tmpfs",
			"timeout": minutes(5 * time.Minute),
			"images": m{
				"kernel": m{
					"url":       g.Kernel,
					"image_arg": fmt.Sprintf(`-kernel {kernel} -append "%s"`, g.Append),
				},
				"ramdisk": m{
					"url":       g.Initrd,
					"image_arg": "-initrd {ramdisk}",
				},
			},
		}})
	}
	actions = append(actions,
		m{"boot": m{
			"role":    names,
			"method":  "qemu",
			"media":   "tmpfs",
			"timeout": minutes(3 * time.Minute),
		}},
		m{"test": m{
			"role":    names,
			"timeout": minutes(testTimeout),
			"monitors": []m{{
				"name":      "kbisect-agent",
				"start":     monitorStart,
				"end":       monitorEnd,
				"pattern":   monitorPattern,
				"fixupdict": m{"ready": "pass"},
			}},
		}},
	)
	job := m{
		"job_name":   s.Name,
		"visibility": vis,
		"priority":   s.Priority,
		"timeouts": m{
			"job":        minutes(testTimeout + 10*time.Minute),
			"action":     minutes(testTimeout),
			"connection": minutes(2 * time.Minute),
		},
		"protocols": m{"lava-multinode": m{
			"roles": roles,
			// How long a node waits for its peers to be scheduled.
			"timeout": minutes(15 * time.Minute),
		}},
		"actions": actions,
	}
	b, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// guestAppend is the kernel command line of a guest.
func guestAppend(extra string) string {
	a := strings.Join(kernelAppend, " ")
	if extra != "" {
		a += " " + extra
	}
	return a
}
