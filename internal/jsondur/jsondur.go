// Package jsondur writes a struct's durations into its JSON as seconds
// under KEY_s, the convention of every kbisect JSON file, and reads them
// back, also from files written before it, which held time.Duration's
// nanoseconds under KEY.
package jsondur

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Field is one duration of a struct and its JSON key (without _s). The
// struct's field itself is tagged `json:"-"`.
type Field struct {
	Key string
	D   *time.Duration
}

// Add returns the JSON object obj with every non-zero duration added as
// KEY_s, in seconds.
func Add(obj []byte, fields []Field) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	for _, f := range fields {
		if *f.D != 0 {
			m[f.Key+"_s"], _ = json.Marshal(f.D.Seconds())
		}
	}
	return json.Marshal(m)
}

// Read sets each duration from the JSON object obj: KEY_s in seconds, or
// else KEY in nanoseconds (files written before seconds).
func Read(obj []byte, fields []Field) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return err
	}
	for _, f := range fields {
		if v, ok := m[f.Key+"_s"]; ok {
			var sec float64
			if err := json.Unmarshal(v, &sec); err != nil {
				return fmt.Errorf("%s_s: %w", f.Key, err)
			}
			*f.D = time.Duration(math.Round(sec * float64(time.Second)))
		} else if v, ok := m[f.Key]; ok {
			var ns int64
			if err := json.Unmarshal(v, &ns); err != nil {
				return fmt.Errorf("%s: %w", f.Key, err)
			}
			*f.D = time.Duration(ns)
		}
	}
	return nil
}
