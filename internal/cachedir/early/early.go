// Package early points the user cache directory at kbisect's own while the
// packages kbisect links are initialised, and package settle puts it back.
//
// golang.org/x/tools/internal/modindex (linked through u-root's gobusybox,
// which builds the initramfs) creates os.UserCacheDir()/goimports when it
// is initialised, before main runs: every kbisect command, --help too,
// would write ~/.cache/goimports. Go initialises packages in import-path
// order where dependencies allow, so this package ("github.com/...") runs
// before modindex ("golang.org/..."); settle imports modindex's importer
// and runs after it. The directory then lands in kbisect's cache. Nothing
// else reads the variable during initialisation.
package early

import (
	"os"

	"github.com/kbisect/kbisect/internal/cachedir"
)

// XDG is the XDG_CACHE_HOME kbisect was started with, and Set whether it
// was set at all: settle restores it.
var (
	XDG string
	Set bool
)

func init() {
	XDG, Set = os.LookupEnv("XDG_CACHE_HOME")
	os.Setenv("XDG_CACHE_HOME", cachedir.Dir(""))
}
