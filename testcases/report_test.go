package testcases

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kbisect/kbisect/internal/version"
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
