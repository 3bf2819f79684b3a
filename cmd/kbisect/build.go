package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
)

func newBuildCmd() *cobra.Command {
	var (
		o       kbuild.Options
		cf      configFlags
		hv      string
		out     string
		asJSON  bool
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "build --repo R --rev X --config C [--jobs N] [--cc gcc-12] [--out DIR]",
		Short: "Build one commit with your kernel config, incrementally and cached",
		Long:  help("build"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			frags, err := cf.selectFragments(hv)
			if err != nil {
				return err
			}
			o.Config, o.Fragments = cf.config, frags
			o.Log = os.Stderr
			if verbose {
				o.BuildLog = os.Stderr
			}
			res := (&testcases.CommitTest{Build: o}).BuildCommit(cmd.Context(), o.Rev)
			switch {
			case res.Verdict == testcases.Skip:
				return &exitError{code: 1, err: res.Err}
			case res.Artifact == nil:
				return res.Err
			}
			a := res.Artifact
			if out != "" {
				if a, err = a.CopyTo(out); err != nil {
					return err
				}
			}
			if asJSON {
				return a.WriteJSON(cmd.OutOrStdout())
			}
			a.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Repo, "repo", ".", "kernel git repository (only read)")
	f.StringVar(&o.Rev, "rev", "HEAD", "commit to build")
	cf.register(f, "config", "", "kernel config: a .config file, defconfig or tinyconfig")
	f.StringVar(&hv, "hypervisor", "qemu", "what will boot the kernel: qemu, or xen (adds the xen-guest fragment)")
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "parallel make jobs (default: number of CPUs)")
	f.StringVar(&o.CC, "cc", "", "compiler, e.g. gcc-12 or gcc-11 (default: the toolchain table's, gcc)")
	f.StringVar(&out, "out", "", "copy the kernel's files to this directory")
	f.IntVar(&o.Slots, "slots", 1, "build slots (checkout + build directory) per repository")
	f.BoolVar(&o.NoCache, "no-cache", false, "rebuild even if the build cache has this kernel")
	f.BoolVar(&o.NoCcache, "no-ccache", false, "do not use ccache")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVarP(&verbose, "verbose", "v", false, "show make's output")
	cmd.MarkFlagRequired("config")
	return cmd
}
