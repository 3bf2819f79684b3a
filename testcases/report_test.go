package testcases

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/version"
	"github.com/kbisect/kbisect/testcases/esp"
)

// TestReportJSON: a run's JSON names the kbisect that made it, and no
// corruptions are [], never null.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(newReport(&Options{Test: "natt-esp"}))
	if err != nil {
		t.Fatal(err)
	}
	if version.String() == "" {
		t.Fatal("no kbisect version")
	}
	v, _ := json.Marshal(version.String())
	for _, want := range []string{`"corruptions":[]`, `"kbisect":` + string(v)} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report JSON lacks %s: %s", want, b)
		}
	}
}

// TestWireNamesMatchAnalyze: kbisect run's "wire" object and kbisect
// analyze's JSON name the same things the same way.
func TestWireNamesMatchAnalyze(t *testing.T) {
	keys := func(v any) map[string]bool {
		b, _ := json.Marshal(v)
		m := map[string]json.RawMessage{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for k := range m {
			out[k] = true
		}
		return out
	}
	run := keys(Wire{Detail: "x", Missing: []string{"x"}})
	analyze := keys(esp.Report{Missing: []string{"x"}})
	for _, k := range []string{"verdict", "detail", "missing", "packets", "esp_packets", "bytes_verified", "icv_failures", "checksum_errors", "undecryptable"} {
		if !run[k] || !analyze[k] {
			t.Errorf("%q: in run's wire %v, in analyze %v", k, run[k], analyze[k])
		}
	}
}
