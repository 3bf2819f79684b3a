// Package kconfigs knows kernel configs: it parses and writes .config
// files, embeds the fragments a kbisect guest needs (qemu-x86_64, agent,
// natt-esp, xen-guest, debug, lean), merges them into a user's config the
// way merge_config.sh does, keeps them valid per kernel version with a
// gate table, runs the config targets (olddefconfig, or oldconfig with
// empty answers before 3.7; tinyconfig, defconfig) in an O= directory, and
// checks that every wanted setting survived, explaining the ones that did
// not from the tree's Kconfig files (the unmet dependency, the missing
// select, or that the symbol does not exist in this version).
//
// Typical use, with a checked-out tree:
//
//	m := &kconfigs.Make{SrcDir: src, ObjDir: obj, Vars: []string{"CC=gcc"}}
//	res, err := m.Prepare(ctx, userConfig, kconfigs.Defaults())
//	// err: make failed. res.Err(): a required setting did not survive.
//	res.Report(os.Stdout)
package kconfigs
