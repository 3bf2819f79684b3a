package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kbisect/kbisect/testcases/esp"
)

func newAnalyzeCmd() *cobra.Command {
	var (
		pcaps    []string
		keysPath string
		recvPath string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "analyze --pcap FILE [--pcap FILE2] [--keys KEYS] [--receiver-result R.json] [--json]",
		Short: "Decrypt a run's ESP capture and say whether the wire carried the corruption",
		Long:  help("analyze"),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(pcaps) == 0 || len(pcaps) > 2 {
				return fmt.Errorf("give one capture, or two (sender side, receiver side) with --pcap; got %d", len(pcaps))
			}
			for _, p := range pcaps {
				if _, err := os.Stat(p); err != nil {
					return fmt.Errorf("capture: %w", err)
				}
			}
			if keysPath == "" {
				keysPath = esp.KeysPathFor(pcaps[0])
				if _, err := os.Stat(keysPath); err != nil {
					return fmt.Errorf("no keys given and no %s next to the capture: pass the run's keys with --keys", filepath.Base(keysPath))
				}
			}
			out, keys, err := esp.AnalyzeFiles(cmd.Context(), pcaps, keysPath, recvPath)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			out.WriteText(cmd.OutOrStdout(), keys)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&pcaps, "pcap", nil, "capture file (pcap or pcapng); give twice for both sides of a NAT, sender side first")
	cmd.Flags().StringVar(&keysPath, "keys", "", "the run's keys file (default: the .keys.json next to the first capture)")
	cmd.Flags().StringVar(&recvPath, "receiver-result", "", "the receiving agent's result JSON (or kbisect run's JSON), to tell decap from encap")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
