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
		Long:  help("kconfig"),
		Args:  cobra.NoArgs,
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
