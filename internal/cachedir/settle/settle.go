// Package settle restores XDG_CACHE_HOME once the packages that wrote
// into the user cache directory while initialised have been (see package
// early). A command imports it, blank, to keep its writes in kbisect's
// cache.
package settle

import (
	"os"

	"github.com/kbisect/kbisect/internal/cachedir/early"

	// Initialised before this package: its modindex makes its directory
	// while XDG_CACHE_HOME points into kbisect's cache.
	_ "golang.org/x/tools/imports"
)

func init() {
	if early.Set {
		os.Setenv("XDG_CACHE_HOME", early.XDG)
	} else {
		os.Unsetenv("XDG_CACHE_HOME")
	}
}
