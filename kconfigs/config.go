package kconfigs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Config is a kernel .config: symbol values in file order. Symbols are
// named without the CONFIG_ prefix. A symbol set to "n" is written as
// "# CONFIG_FOO is not set".
type Config struct {
	order []string
	vals  map[string]string
}

var (
	setLine   = regexp.MustCompile(`^CONFIG_([A-Za-z0-9_]+)=(.*)$`)
	unsetLine = regexp.MustCompile(`^# CONFIG_([A-Za-z0-9_]+) is not set\s*$`)
)

// NewConfig returns an empty Config.
func NewConfig() *Config { return &Config{vals: map[string]string{}} }

// ParseConfig parses .config text. Comments and blank lines are dropped;
// a line that is neither is an error naming its number.
func ParseConfig(data []byte) (*Config, error) {
	c := NewConfig()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if m := setLine.FindStringSubmatch(line); m != nil {
			c.Set(m[1], m[2])
			continue
		}
		if m := unsetLine.FindStringSubmatch(line); m != nil {
			c.Set(m[1], "n")
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return nil, fmt.Errorf("line %d: %q is not CONFIG_NAME=value or a comment", n, line)
	}
	return c, sc.Err()
}

// ReadConfig reads and parses the .config at path.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kernel config %s: %w", path, err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("kernel config %s: %w", path, err)
	}
	return c, nil
}

// Lookup returns the value of sym ("y", "m", "n", a number or a quoted
// string) and whether the config mentions it.
func (c *Config) Lookup(sym string) (string, bool) {
	v, ok := c.vals[strings.TrimPrefix(sym, "CONFIG_")]
	return v, ok
}

// Value returns the value of sym, "n" if the config does not mention it.
func (c *Config) Value(sym string) string {
	if v, ok := c.Lookup(sym); ok {
		return v
	}
	return "n"
}

// Set sets sym to val, appending it if it is new.
func (c *Config) Set(sym, val string) {
	sym = strings.TrimPrefix(sym, "CONFIG_")
	if _, ok := c.vals[sym]; !ok {
		c.order = append(c.order, sym)
	}
	c.vals[sym] = val
}

// Symbols returns the symbols the config mentions, in file order.
func (c *Config) Symbols() []string { return append([]string(nil), c.order...) }

// Len returns the number of symbols the config mentions.
func (c *Config) Len() int { return len(c.order) }

// Clone returns a copy of c.
func (c *Config) Clone() *Config {
	d := NewConfig()
	for _, s := range c.order {
		d.Set(s, c.vals[s])
	}
	return d
}

// Bytes returns the config in .config syntax.
func (c *Config) Bytes() []byte {
	var b bytes.Buffer
	for _, s := range c.order {
		writeSetting(&b, s, c.vals[s])
	}
	return b.Bytes()
}

func writeSetting(b *bytes.Buffer, sym, val string) {
	if val == "n" {
		fmt.Fprintf(b, "# CONFIG_%s is not set\n", sym)
	} else {
		fmt.Fprintf(b, "CONFIG_%s=%s\n", sym, val)
	}
}

// Change is one difference between two configs.
type Change struct {
	Symbol string
	// Old and New are the values before and after; Old is "" when the
	// symbol was absent, New is "" when it went away.
	Old, New string
	// Source names what made the change (a fragment, or "olddefconfig").
	Source string
}

// String renders the change as "CONFIG_X: old -> new (source)".
func (ch Change) String() string {
	show := func(v string) string {
		switch v {
		case "":
			return "(absent)"
		case "n":
			return "is not set"
		}
		return v
	}
	s := fmt.Sprintf("CONFIG_%s: %s -> %s", ch.Symbol, show(ch.Old), show(ch.New))
	if ch.Source != "" {
		s += " (" + ch.Source + ")"
	}
	return s
}

// Diff lists the symbols whose value differs between a and b (a symbol a
// lacks and b sets to "n" does not count), sorted by name.
func Diff(a, b *Config) []Change {
	var out []Change
	seen := map[string]bool{}
	for _, c := range []*Config{a, b} {
		for _, s := range c.order {
			if seen[s] {
				continue
			}
			seen[s] = true
			av, aok := a.Lookup(s)
			bv, bok := b.Lookup(s)
			if effective(av) == effective(bv) {
				continue
			}
			ch := Change{Symbol: s}
			if aok {
				ch.Old = av
			}
			if bok {
				ch.New = bv
			}
			out = append(out, ch)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Symbol < out[j].Symbol })
	return out
}

func effective(v string) string {
	if v == "" {
		return "n"
	}
	return v
}
