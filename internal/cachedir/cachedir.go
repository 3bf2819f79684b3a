// Package cachedir says where kbisect keeps its caches.
package cachedir

import (
	"os"
	"path/filepath"
)

// Dir returns the cache directory for sub (e.g. "builds"): $KBISECT_CACHE,
// else $XDG_CACHE_HOME/kbisect, else ~/.cache/kbisect, joined with sub.
func Dir(sub string) string {
	base := os.Getenv("KBISECT_CACHE")
	if base == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			base = filepath.Join(x, "kbisect")
		} else if h, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(h, ".cache", "kbisect")
		} else {
			base = filepath.Join(os.TempDir(), "kbisect-cache")
		}
	}
	return filepath.Join(base, sub)
}
