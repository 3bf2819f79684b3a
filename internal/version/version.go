// Package version says which kbisect made a result: the module version and
// the VCS commit the binary was built from, as the Go toolchain records
// them.
package version

import (
	"runtime/debug"
	"sync"
)

var (
	once sync.Once
	str  string
)

// String is the module version the Go toolchain stamped (a tag, or a
// pseudo-version such as "v0.0.0-20261206035458-fd022a8b3563+dirty" that
// names the commit, "+dirty" for a build from a working tree with
// changes), else "devel (commit 0123456789ab)" from the VCS settings alone,
// else "devel" (go run, tests, -buildvcs=false).
func String() string {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		str = "devel"
		if !ok {
			return
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			str = v
			return
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			str += " (commit " + rev + modified + ")"
		}
	})
	return str
}
