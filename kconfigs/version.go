package kconfigs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Version is a kernel version as its top Makefile states it (VERSION,
// PATCHLEVEL, SUBLEVEL). The stable number of 2.6.x trees (2.6.32.2) and any
// -rc suffix are not part of it.
type Version struct {
	Major, Minor, Patch int
}

// V is a shorthand for Version{major, minor, patch}.
func V(major, minor, patch int) Version { return Version{major, minor, patch} }

// ParseVersion parses "3.14", "3.14.5", "v2.6.32", "2.6.32.2" or "6.1-rc3".
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(t, "-+ "); i >= 0 {
		t = t[:i]
	}
	parts := strings.Split(t, ".")
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("kernel version %q: want MAJOR.MINOR[.PATCH]", s)
	}
	var n [3]int
	for i := 0; i < 3 && i < len(parts); i++ {
		x, err := strconv.Atoi(parts[i])
		if err != nil || x < 0 {
			return Version{}, fmt.Errorf("kernel version %q: want MAJOR.MINOR[.PATCH]", s)
		}
		n[i] = x
	}
	return Version{n[0], n[1], n[2]}, nil
}

// String returns "MAJOR.MINOR.PATCH".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// IsZero reports whether v is the zero Version (unknown).
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for _, d := range [3]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	return 0
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

// Range is a half-open range of kernel versions [From, Until). A zero From
// means "since forever", a zero Until "still today".
type Range struct {
	From, Until Version
}

// Contains reports whether v lies in r.
func (r Range) Contains(v Version) bool {
	if !r.From.IsZero() && v.Less(r.From) {
		return false
	}
	if !r.Until.IsZero() && !v.Less(r.Until) {
		return false
	}
	return true
}

// String returns the range as ">=A", "<B", "A..<B" or "any".
func (r Range) String() string {
	switch {
	case r.From.IsZero() && r.Until.IsZero():
		return "any"
	case r.From.IsZero():
		return "<" + r.Until.String()
	case r.Until.IsZero():
		return ">=" + r.From.String()
	}
	return r.From.String() + "..<" + r.Until.String()
}

var makefileVar = regexp.MustCompile(`(?m)^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=[ \t]*(\d*)`)

// MakefileVersion reads the version from the contents of a kernel's top
// Makefile.
func MakefileVersion(makefile []byte) (Version, error) {
	vals := map[string]int{}
	for _, m := range makefileVar.FindAllSubmatch(makefile, 6) {
		if _, dup := vals[string(m[1])]; dup || len(m[2]) == 0 {
			continue
		}
		vals[string(m[1])], _ = strconv.Atoi(string(m[2]))
	}
	maj, ok1 := vals["VERSION"]
	min, ok2 := vals["PATCHLEVEL"]
	if !ok1 || !ok2 {
		return Version{}, fmt.Errorf("no VERSION and PATCHLEVEL lines: not a kernel Makefile")
	}
	return Version{maj, min, vals["SUBLEVEL"]}, nil
}

// TreeVersion reads the version of the kernel tree in dir.
func TreeVersion(dir string) (Version, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil {
		return Version{}, fmt.Errorf("kernel tree %s: %w", dir, err)
	}
	v, err := MakefileVersion(data)
	if err != nil {
		return Version{}, fmt.Errorf("kernel tree %s: Makefile: %w", dir, err)
	}
	return v, nil
}
