package lava

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/testcases"
)

func TestNewClient(t *testing.T) {
	tests := []struct {
		url, token string
		want       string // base URL, or "" for an error
		err        string
	}{
		{"https://lava.example.org", "t", "https://lava.example.org/", ""},
		{"https://lava.example.org/api/v0.2/", "t", "https://lava.example.org/", ""},
		{"http://127.0.0.1:8000/lava/", "t", "http://127.0.0.1:8000/lava/", ""},
		{"", "t", "", "--lava-url"},
		{"lava.example.org", "t", "", "http(s)"},
		{"https://lava.example.org", "", "", "--lava-token"},
	}
	for _, tc := range tests {
		c, err := NewClient(tc.url, tc.token)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NewClient(%q, %q): error %v, want one naming %s", tc.url, tc.token, err, tc.err)
			}
			continue
		}
		if err != nil || c.URL.String() != tc.want {
			t.Errorf("NewClient(%q): %v, %v; want %s", tc.url, c, err, tc.want)
		}
	}
}

// A job log as LAVA 2023.01 writes it: a console line's double quotes are
// escaped, structured results are mappings.
const sampleLog = `- {"dt": "2026-11-27T10:29:18.99", "lvl": "info", "msg": "ok: start string found"}
- {"dt": "2026-11-27T10:29:18.99", "lvl": "target", "msg": "KBISECT-EVENT {\\\"type\\\":\\\"ready\\\",\\\"role\\\":\\\"sender\\\",\\\"uptime\\\":8.02}"}
- {"dt": "2026-11-27T10:29:19.00", "lvl": "results", "msg": {"case": "sender", "definition": "kbisect-agent", "result": "pass"}}
not a log line
- {"dt": "2026-11-27T10:29:28.14", "lvl": "feedback", "msg": "[   17.16] reboot: Restarting system", "ns": "common"}
`

func TestParseLog(t *testing.T) {
	lines := parseLog([]byte(sampleLog))
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %+v", len(lines), lines)
	}
	tests := []struct {
		i     int
		level string
		text  string
	}{
		{0, "info", "ok: start string found"},
		{1, "target", `KBISECT-EVENT {"type":"ready","role":"sender","uptime":8.02}`},
		{3, "feedback", "[   17.16] reboot: Restarting system"},
	}
	for _, tc := range tests {
		l := lines[tc.i]
		got := l.Text()
		if l.Level == "target" || l.Level == "feedback" {
			got = consoleText(got)
		}
		if l.Level != tc.level || got != tc.text {
			t.Errorf("line %d: %s %q, want %s %q", tc.i, l.Level, got, tc.level, tc.text)
		}
	}
	var res map[string]string
	if err := json.Unmarshal(lines[2].Msg, &res); err != nil || res["result"] != "pass" {
		t.Errorf("results line: %s (%v)", lines[2].Msg, err)
	}
}

func TestYAMLField(t *testing.T) {
	meta := "case: job\ndefinition: lava\nerror_msg: 'Invalid job data: [\"2.1.1 execute-qemu: Missing ''arch''\"]\n\n  '\nerror_type: Job\nresult: fail\n"
	for key, want := range map[string]string{"definition": "lava", "error_type": "Job", "result": "fail", "missing": ""} {
		if got := yamlField(meta, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
}

// TestDefinition checks the MultiNode job a run becomes: a role per guest
// with the joining network in its context, each role's own artifacts, the
// monitors, timeouts that follow the test's length.
func TestDefinition(t *testing.T) {
	w := newWire()
	spec := &jobSpec{Name: "kbisect test", DeviceType: "qemu", Test: 10 * time.Minute, MemoryMB: 512, Priority: 50}
	cpus := map[string]string{"sender": "max,-smap", "receiver": "max"}
	for _, role := range []string{"sender", "receiver"} {
		spec.Guests = append(spec.Guests, guestJob{Role: role, Kernel: "http://h/k" + role, Initrd: "http://h/i" + role,
			Append: guestAppend("foo=1"), Network: w.netdev, CPU: cpus[role]})
	}
	def, err := spec.definition()
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		Timeouts  map[string]map[string]int `json:"timeouts"`
		Protocols struct {
			MultiNode struct {
				Roles map[string]struct {
					DeviceType string         `json:"device_type"`
					Count      int            `json:"count"`
					Context    map[string]any `json:"context"`
				} `json:"roles"`
			} `json:"lava-multinode"`
		} `json:"protocols"`
		Actions []map[string]map[string]any `json:"actions"`
	}
	if err := json.Unmarshal([]byte(def), &job); err != nil {
		t.Fatal(err)
	}
	if got := job.Timeouts["job"]["minutes"]; got < 25 {
		t.Errorf("job timeout %d min for a 10 min test", got)
	}
	roles := job.Protocols.MultiNode.Roles
	if len(roles) != 2 {
		t.Fatalf("roles %v", roles)
	}
	for name, r := range roles {
		if r.DeviceType != "qemu" || r.Count != 1 || r.Context["netdevice"] != w.netdev || r.Context["arch"] != "amd64" {
			t.Errorf("role %s: %+v", name, r)
		}
		if !strings.HasPrefix(w.netdev, "socket,mcast=239.255.") {
			t.Errorf("netdev %s", w.netdev)
		}
		// Each guest's own CPU model: an old kernel's quirks stay its own.
		if opts := fmt.Sprint(r.Context["extra_options"]); !strings.Contains(opts, "-cpu "+cpus[name]+" ") {
			t.Errorf("role %s: extra_options %s, want -cpu %s", name, opts, cpus[name])
		}
	}
	var deploys, monitors int
	for _, a := range job.Actions {
		if d, ok := a["deploy"]; ok {
			deploys++
			role := d["role"].([]any)[0].(string)
			k := d["images"].(map[string]any)["kernel"].(map[string]any)
			if k["url"] != "http://h/k"+role || !strings.Contains(k["image_arg"].(string), "foo=1") {
				t.Errorf("deploy of %s: %v", role, d)
			}
		}
		if tst, ok := a["test"]; ok {
			monitors += len(tst["monitors"].([]any))
		}
	}
	if deploys != 2 || monitors != 1 {
		t.Errorf("%d deploys, %d monitors", deploys, monitors)
	}
	if w.macs[0] == w.macs[1] {
		t.Errorf("guests share MAC %s", w.macs[0])
	}
}

// TestNewExecutor: local runs here; lava is checked by New before
// anything runs; anything else names the choices.
func TestNewExecutor(t *testing.T) {
	for _, tc := range []struct {
		where string
		o     Options
		err   string
	}{
		{"", Options{}, ""},
		{"local", Options{URL: "ignored"}, ""},
		{"slurm", Options{}, "unknown executor \"slurm\": use local or lava"},
		{"lava", Options{}, "--lava-url"},
		{"lava", Options{URL: "http://127.0.0.1:1/", Token: "t", Priority: 101}, "0..100"},
	} {
		t.Setenv("KBISECT_LAVA_TOKEN", "")
		e, release, err := NewExecutor(context.Background(), tc.where, tc.o)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one with %q", tc.where, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.where, err)
		}
		if _, ok := e.(testcases.Local); !ok {
			t.Errorf("%q: executor %T, want testcases.Local", tc.where, e)
		}
		release()
	}
}
