package bisect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOptionsJSON: the options store their durations in seconds (KEY_s)
// and the model's settings in snake_case (only when set), read back
// exactly, and journals of format versions 1 (nanoseconds under KEY) and 2
// (the model under Go names) still read.
func TestOptionsJSON(t *testing.T) {
	o := Options{Strategy: "bayes", Confidence: 0.99, Unit: UnitTime, Budget: 30 * time.Minute, RunTime: 90 * time.Second,
		MaxRunTime: 24 * time.Minute, Timeout: 5 * time.Minute, RetryBackoff: time.Millisecond, MaxTime: 2 * time.Hour}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"budget_s":1800`, `"run_time_s":90`, `"max_run_time_s":1440`, `"timeout_s":300`, `"retry_backoff_s":0.001`, `"max_time_s":7200`, `"confidence":0.99`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	if strings.Contains(string(b), `"model"`) {
		t.Errorf("JSON has the default model: %s", b)
	}
	m := o
	m.Model = ModelParams{PriorA: 0.5, RateSpread: 1.2}
	if b, _ := json.Marshal(m); !strings.Contains(string(b), `"model":{"prior_a":0.5,"rate_spread":1.2}`) {
		t.Errorf("model in JSON: %s", b)
	}
	for _, bare := range []string{`"budget":`, `"run_time":`, `"max_run_time":`, `"timeout":`, `"retry_backoff":`, `"max_time":`} {
		if strings.Contains(string(b), bare) {
			t.Errorf("JSON has %s: %s", bare, b)
		}
	}
	for _, tc := range []struct {
		name, json string
		want       Options
	}{
		{"seconds", string(b), o},
		{"format version 1, nanoseconds", `{"strategy":"bayes","confidence":0.99,"unit":"time","budget":1800000000000,"run_time":90000000000,"max_run_time":1440000000000,"timeout":300000000000,"retry_backoff":1000000,"max_time":7200000000000}`, o},
		{"model under Go names, as versions 1 and 2 wrote it", `{"strategy":"bayes","confidence":0.99,"unit":"time","budget_s":1800,"run_time_s":90,"max_run_time_s":1440,"timeout_s":300,"retry_backoff_s":0.001,"max_time_s":7200,"model":{"PriorA":0,"PriorB":0,"FalseFail":0,"Predates":0,"KnownRate":0,"RateSpread":0,"PlugIn":false}}`, o},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Options
			if err := json.Unmarshal([]byte(tc.json), &got); err != nil {
				t.Fatal(err)
			}
			if got.Budget != tc.want.Budget || got.RunTime != tc.want.RunTime || got.MaxRunTime != tc.want.MaxRunTime || got.Timeout != tc.want.Timeout ||
				got.RetryBackoff != tc.want.RetryBackoff || got.MaxTime != tc.want.MaxTime || got.Confidence != tc.want.Confidence || got.Unit != tc.want.Unit || got.Model != tc.want.Model {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestJobNewerFormat: a job directory written by a newer kbisect is
// refused, with what to do, instead of being misread.
func TestJobNewerFormat(t *testing.T) {
	hist := linear(8)
	dir := t.TempDir()
	job, err := Create(dir, testSpec(Options{Confidence: 0.99}), hist)
	if err != nil {
		t.Fatal(err)
	}
	job.Close()
	name := filepath.Join(dir, JournalName)
	b, _ := os.ReadFile(name)
	newer := strings.Replace(string(b), `"version":2`, `"version":3`, 1)
	if newer == string(b) {
		t.Fatalf("no version 2 in the journal: %.200s", b)
	}
	os.WriteFile(name, []byte(newer), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "newer kbisect") {
		t.Errorf("opened a newer job directory: %v", err)
	}
}
