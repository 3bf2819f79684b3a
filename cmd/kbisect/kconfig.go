package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/kbuild"
)

func newKconfigCmd() *cobra.Command {
	var (
		repo, rev, out, cc, hv string
		cf                     configFlags
	)
	cmd := &cobra.Command{
		Use:   "kconfig --repo R --rev X [--base FILE|defconfig|tinyconfig] [--fragment F ...] -o OUT",
		Short: "Make the kernel config kbisect builds: your config plus what the VM and the test need",
		Long: `kconfig merges config fragments into a base config the way merge_config.sh does,
runs olddefconfig (oldconfig before 3.7) in kbisect's own checkout of --rev,
checks that every required setting survived (naming the unmet dependency or
saying that the symbol does not exist in this version) and prints what was
added to or changed in the base config.

The base is your .config (its options stay; only what is needed is added), or
defconfig or tinyconfig (the default). The built-in fragments qemu-x86_64,
agent and natt-esp are always merged unless --no-default-fragments; "lean"
is added for tinyconfig bases, xen-guest with --hypervisor xen. --fragment
adds a built-in fragment or a file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("kconfig: give the output file with -o OUT")
			}
			frags, err := cf.selectFragments(hv)
			if err != nil {
				return err
			}
			res, err := kbuild.Kconfig(cmd.Context(), kbuild.KconfigOptions{
				Repo: repo, Rev: rev, Base: cf.config, Fragments: frags, CC: cc, Log: os.Stderr,
			})
			if err != nil {
				return err
			}
			res.Report(cmd.OutOrStdout())
			if err := res.Err(); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%w; %s not written", err, out)}
			}
			if err := fsutil.WriteFile(out, res.Final.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (Linux %s, %d settings)\n", out, res.Version, res.Final.Len())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&repo, "repo", ".", "kernel git repository (only read)")
	f.StringVar(&rev, "rev", "HEAD", "commit whose Kconfig decides")
	cf.register(f, "base", "tinyconfig", "base config: a .config file, defconfig, tinyconfig or allnoconfig")
	f.StringVar(&hv, "hypervisor", "qemu", "what will boot the kernel: qemu, or xen (adds the xen-guest fragment)")
	f.StringVarP(&out, "output", "o", "", "where to write the resulting .config")
	f.StringVar(&cc, "cc", "", "compiler whose version Kconfig sees (default: the toolchain table's, gcc)")
	return cmd
}
