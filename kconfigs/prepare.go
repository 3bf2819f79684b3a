package kconfigs

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Result is what Prepare did to a config for one kernel version.
type Result struct {
	Version Version
	// Base is the user's config (or the generated base config), Final the
	// config after merging and the update target.
	Base, Final *Config
	// Wanted are the fragment settings that apply to Version; Gated those
	// the gate table dropped for it.
	Wanted, Gated []Setting
	// Merged are the changes the fragments made to Base before the
	// update target ran.
	Merged []Change
	// Problems are wanted settings that did not survive (see Check).
	Problems []Problem
	// Changes are all differences between Base and Final, each with its
	// Source: the fragment that asked for it, "olddefconfig" for a user
	// setting the update target changed (e.g. an option this version does
	// not have), or "dependency" for a symbol that was absent from Base
	// and came with the fragments' settings or this version's defaults.
	Changes []Change
}

// Prepare merges the fragments that apply to the tree's version into base,
// runs the update target in m.ObjDir and checks that every wanted setting
// survived. It returns an error only when something failed to run; a
// setting that did not survive is in Result.Problems (see Result.Err).
func (m *Make) Prepare(ctx context.Context, base *Config, frags []*Fragment) (*Result, error) {
	v, err := m.version()
	if err != nil {
		return nil, err
	}
	r, merged := Plan(v, base, frags)
	final, err := m.Update(ctx, merged)
	if err != nil {
		return nil, err
	}
	if err := r.Complete(m.SrcDir, final); err != nil {
		return nil, err
	}
	return r, nil
}

// Plan is the first half of Prepare, for callers that run (or skip) the
// update target themselves: it gates the fragments for version v and
// merges them into base, returning the Result so far and the merged
// config to update.
func Plan(v Version, base *Config, frags []*Fragment) (*Result, *Config) {
	r := &Result{Version: v, Base: base}
	r.Wanted, r.Gated = For(v, frags...)
	merged, changes := MergeSettings(base, r.Wanted)
	r.Merged = changes
	return r, merged
}

// Complete is the second half of Prepare: given the config the update
// target produced from the tree in srcDir, it fills in Final, Problems
// and Changes.
func (r *Result) Complete(srcDir string, final *Config) error {
	r.Final = final
	var err error
	if r.Problems, err = Check(srcDir, nil, final, r.Wanted); err != nil {
		return err
	}
	source := map[string]string{}
	for _, s := range r.Wanted {
		source[s.Symbol] = s.Source
	}
	r.Changes = nil
	for _, ch := range Diff(r.Base, final) {
		_, had := r.Base.Lookup(ch.Symbol)
		switch {
		case source[ch.Symbol] != "":
			ch.Source = source[ch.Symbol]
		case had:
			ch.Source = UpdateTarget(r.Version)
		default:
			ch.Source = "dependency"
		}
		r.Changes = append(r.Changes, ch)
	}
	return nil
}

// Err returns a *CheckError if a required (not optional) setting did not
// survive, else nil.
func (r *Result) Err() error {
	if f := Failed(r.Problems); len(f) > 0 {
		return &CheckError{Version: r.Version, Problems: f}
	}
	return nil
}

// CheckError lists required settings that a kernel version's Kconfig did
// not accept.
type CheckError struct {
	Version  Version
	Problems []Problem
}

func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel config for %s lacks %d required setting(s): ", e.Version, len(e.Problems))
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Report writes a human summary: what the fragments added or changed in
// the user's config, what the update target changed in the user's own
// settings, what came in as dependencies, what was gated out and every
// problem.
func (r *Result) Report(w io.Writer) {
	bySource := map[string][]Change{}
	var sources []string
	for _, ch := range r.Changes {
		if _, ok := bySource[ch.Source]; !ok {
			sources = append(sources, ch.Source)
		}
		bySource[ch.Source] = append(bySource[ch.Source], ch)
	}
	sort.Slice(sources, func(i, j int) bool {
		return rank(sources[i]) < rank(sources[j]) || rank(sources[i]) == rank(sources[j]) && sources[i] < sources[j]
	})
	fmt.Fprintf(w, "kernel %s: %d setting(s) differ from the base config\n", r.Version, len(r.Changes))
	for _, src := range sources {
		chs := bySource[src]
		switch src {
		case "dependency":
			var on []Change
			for _, ch := range chs {
				if ch.New == "y" || ch.New == "m" {
					on = append(on, ch)
				}
			}
			fmt.Fprintf(w, "pulled in by dependencies and defaults: %d new symbol(s), %d enabled:\n", len(chs), len(on))
			writeNames(w, on)
			continue
		case "olddefconfig", "oldconfig":
			fmt.Fprintf(w, "changed by %s (your settings that this version does not take as given):\n", src)
		default:
			fmt.Fprintf(w, "added or changed by fragment %s:\n", src)
		}
		for _, ch := range chs {
			fmt.Fprintf(w, "  %s\n", Change{Symbol: ch.Symbol, Old: ch.Old, New: ch.New})
		}
	}
	if len(r.Gated) > 0 {
		var names []string
		for _, s := range r.Gated {
			names = append(names, "CONFIG_"+s.Symbol)
		}
		fmt.Fprintf(w, "not applicable to %s (gated by version): %s\n", r.Version, strings.Join(names, " "))
	}
	for _, p := range r.Problems {
		level := "ERROR"
		if p.Optional {
			level = "warning"
		}
		fmt.Fprintf(w, "%s: %s\n", level, p)
	}
}

// writeNames writes the changes' symbol names, wrapped, indented.
func writeNames(w io.Writer, chs []Change) {
	line := " "
	for _, ch := range chs {
		if len(line)+len(ch.Symbol)+1 > 100 {
			fmt.Fprintln(w, line)
			line = " "
		}
		line += " " + ch.Symbol
	}
	if line != " " {
		fmt.Fprintln(w, line)
	}
}

func rank(src string) int {
	switch src {
	case "dependency":
		return 2
	case "olddefconfig", "oldconfig":
		return 1
	}
	return 0
}
