package kbuild

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/kbisect/kbisect/internal/gitrepo"

	"github.com/kbisect/kbisect/kconfigs"
)

// BuildError is a kernel that failed to compile or link. A bisection
// treats it as "skip" (the commit cannot be tested), not as a verdict.
type BuildError struct {
	Commit string
	// FirstError is the first error line of the build log (the compiler's
	// "error:", the linker's "undefined reference", or make's "***").
	FirstError string
	// Log is the path of the full build log.
	Log string
	Err error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("build of %s failed: %s (log: %s)", gitrepo.Short(e.Commit), e.FirstError, e.Log)
}

func (e *BuildError) Unwrap() error { return e.Err }

// ConfigError is a kernel config that lacks required settings in this
// version (see kconfigs.CheckError); like BuildError it makes the commit
// untestable.
type ConfigError struct {
	Commit string
	*kconfigs.CheckError
}

func (e *ConfigError) Error() string {
	return "config for " + gitrepo.Short(e.Commit) + ": " + e.CheckError.Error()
}

func (e *ConfigError) Unwrap() error { return e.CheckError }

// DiskError says a build was not started for lack of disk space.
type DiskError struct {
	Dir        string
	Need, Have uint64
}

func (e *DiskError) Error() string {
	return fmt.Sprintf("not enough free disk space in %s: this build needs about %s, %s is free; free some space or point KBISECT_CACHE at a bigger disk",
		e.Dir, gib(e.Need), gib(e.Have))
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

var (
	errorLine = []*regexp.Regexp{
		regexp.MustCompile(`(?i)(^|\s|:)(fatal )?error:`),
		regexp.MustCompile(`undefined reference to|multiple definition of|No rule to make target|^FATAL: `),
		regexp.MustCompile(`^make(\[\d+\])?: \*\*\*`),
		regexp.MustCompile(`(?i)\berror\b`),
	}
	// makeTarget is the target of a make "***" line that names one.
	makeTarget = regexp.MustCompile(`^make(?:\[\d+\])?: \*\*\* \[[^\]]*: (\S+)\] Error`)
)

// FirstError returns the most telling error line of a build log: the first
// compiler or assembler error, else the first linker or modpost error,
// else make's first "***" line, or the line before it that a tool wrote
// about the target make gave up on (objtool's "thunk_64.o: warning: objtool:
// missing symbol table" stops the build as a warning).
func FirstError(log string) string {
	f, err := os.Open(log)
	if err != nil {
		return "build failed (no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for _, re := range errorLine {
		for i, l := range lines {
			if !re.MatchString(l) {
				continue
			}
			if m := makeTarget.FindStringSubmatch(l); m != nil {
				for k := i - 1; k >= 0; k-- {
					if strings.HasPrefix(lines[k], m[1]+": ") {
						return strings.TrimSpace(lines[k])
					}
				}
			}
			return strings.TrimSpace(l)
		}
	}
	if len(lines) > 0 {
		return strings.TrimSpace(lines[len(lines)-1])
	}
	return "build failed with an empty log"
}

// Untestable reports whether err says the commit itself cannot be built
// with this config (a *BuildError or *ConfigError): a bisection skips such
// a commit. Other errors are infrastructure failures (disk, git, make not
// running, interruption) and must not be taken as a property of the
// commit.
func Untestable(err error) bool {
	var be *BuildError
	var ce *ConfigError
	return errors.As(err, &be) || errors.As(err, &ce)
}
