package main

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
)

// configFlags are the kernel config flags every building command shares:
// the base config and the fragments merged into it. One rule for all of
// them: the default fragments (what the VM and the test need, xen-guest too
// under --hypervisor xen) are always merged, --fragment adds to them, and
// --no-default-fragments leaves only the --fragment ones.
type configFlags struct {
	config     string
	fragments  []string
	noDefaults bool
}

// register adds --NAME (the base config, default def), --fragment and
// --no-default-fragments.
func (c *configFlags) register(fl *pflag.FlagSet, name, def, usage string) {
	fl.StringVar(&c.config, name, def, usage)
	fl.StringArrayVar(&c.fragments, "fragment", nil, "config fragment to merge, in addition to the default ones: a built-in name ("+strings.Join(kconfigs.BuiltinNames(), ", ")+") or a file (repeatable)")
	fl.BoolVar(&c.noDefaults, "no-default-fragments", false, "merge only the --fragment ones (a config of yours that already has what the VM and test need)")
}

// selectFragments returns the fragments for a kernel the given hypervisor
// boots ("" or "qemu": QEMU only).
func (c *configFlags) selectFragments(hypervisor string) ([]*kconfigs.Fragment, error) {
	names := c.fragments
	if !c.noDefaults && hypervisor == testcases.HypervisorXen {
		names = append([]string{"xen-guest"}, names...)
	}
	return kconfigs.Select(names, !c.noDefaults, c.config)
}
