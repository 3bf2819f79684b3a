package kbuild

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// WriteText writes what was built, and where its files are, for people.
func (a *Artifact) WriteText(w io.Writer) {
	how := fmt.Sprintf("built in %s", a.BuildTime().Round(time.Second))
	if a.CacheHit {
		how = fmt.Sprintf("from the build cache (%s; built in %s)", a.Elapsed.Round(time.Millisecond), a.BuildTime().Round(time.Second))
	}
	fmt.Fprintf(w, "kernel %s (Linux %s) %s\n", a.Release, a.Version, how)
	fmt.Fprintf(w, "  commit     %s (tree %s)\n", a.Commit, a.Tree)
	fmt.Fprintf(w, "  signature  %s\n", a.Signature)
	fmt.Fprintf(w, "  bzImage    %s\n  vmlinux    %s\n  config     %s\n  build log  %s\n", a.BzImage, a.Vmlinux, a.Config, a.Log)
	if a.Modules != "" {
		fmt.Fprintf(w, "  modules    %s\n", a.Modules)
	}
	if len(a.Fixups) > 0 {
		fmt.Fprintf(w, "  fixups     %v\n", a.Fixups)
	}
	fmt.Fprintf(w, "  toolchain  %s\n", a.Toolchain)
	for _, warn := range a.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

// WriteJSON writes the artifact as `kbisect build --json` prints it: the
// cache record with the paths and this call's timings.
func (a *Artifact) WriteJSON(w io.Writer) error {
	v := struct {
		*Artifact
		Commit      string  `json:"commit"`
		BuiltCommit string  `json:"built_commit"`
		Dir         string  `json:"dir"`
		BzImage     string  `json:"bzimage"`
		Vmlinux     string  `json:"vmlinux"`
		Config      string  `json:"config"`
		Log         string  `json:"log"`
		Modules     string  `json:"modules,omitempty"`
		CacheHit    bool    `json:"cache_hit"`
		Elapsed     float64 `json:"elapsed_seconds"`
		BuildTime   float64 `json:"build_seconds"`
	}{a, a.Commit, a.BuiltCommit, a.Dir, a.BzImage, a.Vmlinux, a.Config, a.Log, a.Modules, a.CacheHit, a.Elapsed.Seconds(), a.BuildTime().Seconds()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
