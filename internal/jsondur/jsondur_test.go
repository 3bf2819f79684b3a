package jsondur

import (
	"strings"
	"testing"
	"time"
)

func TestAddRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want [2]time.Duration
	}{
		{"seconds", `{"a_s":1.5,"b_s":0.001,"x":1}`, [2]time.Duration{1500 * time.Millisecond, time.Millisecond}},
		{"nanoseconds of older files", `{"a":1500000000,"b":1000000}`, [2]time.Duration{1500 * time.Millisecond, time.Millisecond}},
		{"seconds win", `{"a":7,"a_s":2}`, [2]time.Duration{2 * time.Second, 0}},
		{"absent", `{"x":1}`, [2]time.Duration{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b time.Duration
			f := []Field{{"a", &a}, {"b", &b}}
			if err := Read([]byte(tc.json), f); err != nil {
				t.Fatal(err)
			}
			if a != tc.want[0] || b != tc.want[1] {
				t.Errorf("read %v %v, want %v", a, b, tc.want)
			}
			out, err := Add([]byte(`{"x":1}`), f)
			if err != nil {
				t.Fatal(err)
			}
			var a2, b2 time.Duration
			if err := Read(out, []Field{{"a", &a2}, {"b", &b2}}); err != nil || a2 != a || b2 != b {
				t.Errorf("round trip %s: %v %v, %v", out, a2, b2, err)
			}
			if strings.Contains(string(out), `"a":`) || !strings.Contains(string(out), `"x":1`) {
				t.Errorf("written %s", out)
			}
		})
	}
	if err := Read([]byte(`{"a_s":"1m"}`), []Field{{"a", new(time.Duration)}}); err == nil {
		t.Error("a string read as seconds")
	}
}
