package main

import (
	"embed"
	"strings"
)

// helpFiles are the commands' long help texts, one file per command:
// help/NAME.txt, NAME its path below kbisect with dashes ("bisect-report").
//
//go:embed help/*.txt
var helpFiles embed.FS

// help is the long help of the command NAME.
func help(name string) string {
	b, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic(err) // embedded at build time: a name without a file is a bug
	}
	return strings.TrimSuffix(string(b), "\n")
}
