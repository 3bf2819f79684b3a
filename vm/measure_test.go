package vm

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// bootOnce boots cfg and returns the wall time from launch to the first
// agent line and the guest uptime the line reports.
func bootOnce(t testing.TB, cfg Config) (wall time.Duration, uptime float64) {
	t.Helper()
	g, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	line, wall := firstLine(t, g)
	var ev struct {
		Uptime float64 `json:"uptime"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "KBISECT-EVENT ")), &ev); err != nil {
		t.Fatalf("agent line %q: %v", line, err)
	}
	if o := g.Wait(); o.Err() != nil {
		t.Fatalf("%v\n%s", o.Err(), o.ConsoleTail)
	}
	return wall, ev.Uptime
}

func median[T int64 | float64 | time.Duration](v []T) T {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[len(v)/2]
}

// TestMeasureBootVariants prints boot times for the choices the QEMU backend
// makes. It is a measurement, not a check: KBISECT_VM_MEASURE=N runs each
// variant N times.
func TestMeasureBootVariants(t *testing.T) {
	n := 0
	if s := os.Getenv("KBISECT_VM_MEASURE"); s != "" {
		n = int(s[0] - '0')
	}
	if n <= 0 {
		t.Skip("set KBISECT_VM_MEASURE=N to measure boot variants")
	}
	needQEMU(t)
	initrd := testInitramfs(t)
	minimal := []string{"console=ttyS0", "panic=-1"}
	full := append([]string(nil), baseAppend...)
	defer func() { baseAppend = full }()
	type variant struct {
		name   string
		append []string
		mod    func(*Config)
	}
	without := func(opt string) []string {
		var out []string
		for _, o := range full {
			if o != opt {
				out = append(out, o)
			}
		}
		return out
	}
	variants := []variant{
		{"seabios bzImage pc minimal", minimal, func(c *Config) { c.QEMU.Firmware = "seabios"; c.QEMU.NoPVH = true }},
		{"qboot bzImage pc minimal", minimal, func(c *Config) { c.QEMU.Firmware = "qboot"; c.QEMU.NoPVH = true }},
		{"seabios pvh pc minimal", minimal, func(c *Config) { c.QEMU.Firmware = "seabios" }},
		{"qboot pvh pc minimal", minimal, func(c *Config) {}},
		{"qboot pvh q35 minimal", minimal, func(c *Config) { c.QEMU.Machine = "q35" }},
		{"qboot pvh pc full", full, func(c *Config) {}},
		{"qboot pvh q35 full", full, func(c *Config) { c.QEMU.Machine = "q35" }},
	}
	if os.Getenv("KBISECT_VM_MEASURE_OPTS") != "" {
		for _, o := range full {
			variants = append(variants, variant{"qboot pvh pc full -" + o, without(o), func(c *Config) {}})
		}
		variants = append(variants,
			variant{"qboot pvh pc full -quiet +loglevel=5", append(without("quiet"), "loglevel=5"), func(c *Config) {}},
			variant{"qboot pvh pc minimal +quiet", append(append([]string(nil), minimal...), "quiet"), func(c *Config) {}},
		)
	}
	for _, v := range variants {
		var walls []time.Duration
		var ups []float64
		for i := 0; i < n; i++ {
			baseAppend = v.append
			cfg := testConfig(t, "m", initrd, "hello")
			v.mod(&cfg)
			w, u := bootOnce(t, cfg)
			walls = append(walls, w)
			ups = append(ups, u)
		}
		t.Logf("%-45s wall-to-first-line %5.2fs  guest-uptime %5.2fs  (median of %d)", v.name, median(walls).Seconds(), median(ups), n)
	}
}
