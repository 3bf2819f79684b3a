package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/term"
)

// progressFunc returns where long work reports progress: stderr when it is a
// terminal and neither --json nor CI asks for quiet, nowhere otherwise.
func progressFunc(jsonOut bool) func(string) {
	if jsonOut || os.Getenv("CI") != "" || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	start := time.Now()
	return func(msg string) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), msg)
	}
}
