package main

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpFiles: every help file is the long help of the command it is
// named after, so none is left unused or given to another command.
func TestHelpFiles(t *testing.T) {
	byName := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		byName[strings.ReplaceAll(strings.TrimPrefix(c.CommandPath(), "kbisect "), " ", "-")] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	files, err := fs.Glob(helpFiles, "help/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("help files: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "help/"), ".txt")
		c, ok := byName[name]
		if !ok {
			t.Errorf("%s: no command %q", f, name)
			continue
		}
		if c.Long == "" || c.Long != help(name) {
			t.Errorf("%s is not the long help of %s", f, c.CommandPath())
		}
	}
}
