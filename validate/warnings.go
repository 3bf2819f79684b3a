package validate

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Warning is a compiler warning from a build log.
type Warning struct {
	// File is the path in the kernel tree.
	File    string `json:"file"`
	Line    int    `json:"line"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	return w.File + ":" + strconv.Itoa(w.Line) + ": warning: " + w.Message
}

var (
	ansiEscape  = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
	warningLine = regexp.MustCompile(`^(\S+?):(\d+):(?:\d+:)? warning: (.+)$`)
	// compileLine is kbuild's quiet output for a C file, e.g.
	// "  CC      net/ipv4/esp4.o" (or "CC [M]").
	compileLine = regexp.MustCompile(`^\s+CC(?: \[M\])?\s+(\S+)\.o$`)
	// treePrefix is what precedes a tree path in a compiler message: an
	// O= build's "../src/", or a slot's absolute path.
	treePrefix = regexp.MustCompile(`^(?:\.\./src/|/.*?/slot\d+/src/|\./)`)
)

// buildLog is what a kernel build log says about warnings.
type buildLog struct {
	warnings []Warning
	// compiled holds the C files (tree paths) the build compiled.
	compiled map[string]bool
}

// parseBuildLog reads the warnings and compiled files of a build log.
func parseBuildLog(path string) (*buildLog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bl := &buildLog{compiled: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		l := ansiEscape.ReplaceAllString(sc.Text(), "")
		if m := compileLine.FindStringSubmatch(l); m != nil {
			bl.compiled[m[1]+".c"] = true
			continue
		}
		if m := warningLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[2])
			bl.warnings = append(bl.warnings, Warning{File: treePrefix.ReplaceAllString(m[1], ""), Line: n, Message: strings.TrimSpace(m[3])})
		}
	}
	return bl, sc.Err()
}

// newWarnings returns the warnings of the patched build in files that are
// absent from the base build (same file and message, whatever the line),
// and the touched C files the patched build compiled but the base's log
// does not show (a cached or incremental base build): their warnings are
// reported, but could not be compared.
func newWarnings(base, patched *buildLog, files []string) (news []Warning, uncompared []string) {
	touched := map[string]bool{}
	for _, f := range files {
		touched[f] = true
	}
	old := map[string]bool{}
	for _, w := range base.warnings {
		old[w.File+"\x00"+w.Message] = true
	}
	seen := map[string]bool{}
	for _, w := range patched.warnings {
		k := w.File + "\x00" + w.Message
		if !touched[w.File] || old[k] || seen[k] {
			continue
		}
		seen[k] = true
		news = append(news, w)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".c") && patched.compiled[f] && !base.compiled[f] {
			uncompared = append(uncompared, f)
		}
	}
	sort.Strings(uncompared)
	return news, uncompared
}

// slotPath is a path into a build slot's checkout, as compiler messages
// show it.
var slotPath = regexp.MustCompile(`(?:/\S*?/slot\d+/src/|\.\./src/)`)

// cleanLine strips terminal colours from a log line and makes the paths in
// it relative to the kernel tree.
func cleanLine(s string) string {
	return strings.TrimSpace(slotPath.ReplaceAllString(ansiEscape.ReplaceAllString(s, ""), ""))
}
