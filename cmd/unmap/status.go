package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/status"
)

// Default status sockets of the two agents; unmap-edge@SITE.service's
// edges answer on edge-SITE.sock beside them.
const (
	edgeSocket  = "/run/unmap/edge.sock"
	relaySocket = "/run/unmap/relay.sock"
	siteSockets = "/run/unmap/edge-*.sock"
)

// defaultSockets are the sockets asked without --socket: the two
// defaults, then each templated edge's, by name.
func defaultSockets(glob string) []string {
	out := []string{edgeSocket, relaySocket}
	sites, _ := filepath.Glob(glob) // the pattern is well formed: no error
	return append(out, sites...)
}

func newStatusCmd() *cobra.Command {
	var (
		sockets []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the running edge or relay agent is doing",
		Long: `Ask the agents running on this machine for their status over their local
sockets (by default ` + edgeSocket + `, ` + relaySocket + ` and each
templated edge's ` + siteSockets + `) and print it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			explicit := cmd.Flags().Changed("socket")
			if !explicit {
				sockets = defaultSockets(siteSockets)
			}
			var errs []error
			found := 0
			for _, path := range sockets {
				st, err := status.Fetch(cmd.Context(), path)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				found++
				if len(sockets) > 1 && !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "%s:\n", path) // which agent of several
				}
				if err := printStatus(cmd.OutOrStdout(), st, asJSON); err != nil {
					return err
				}
			}
			if found == 0 || explicit {
				return errors.Join(errs...)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&sockets, "socket", nil, "agent status socket(s) to ask (default "+edgeSocket+", "+relaySocket+", "+siteSockets+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	return cmd
}

func printStatus(w io.Writer, st *status.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "%s %s, up %s\n", st.Role, st.Version, time.Since(st.Started).Round(time.Second))
	names := make([]string, 0, len(st.Sections))
	for n := range st.Sections {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if counts, ok := countTable(st.Sections[n]); ok {
			fmt.Fprintf(w, "  %s:\n", n)
			printCounts(w, counts)
			continue
		}
		var b bytes.Buffer
		if err := json.Indent(&b, st.Sections[n], "  ", "  "); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s: %s\n", n, b.String())
	}
	return nil
}

// countTable reads a section that is only counts by name (the slow path's
// and the control channel's counters, the datapath's reasons: the same
// values /metrics serves, under their readable names).
func countTable(raw json.RawMessage) (map[string]uint64, bool) {
	var m map[string]uint64
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	return m, true
}

// printCounts prints counts as a table, by name; none is "(none)".
func printCounts(w io.Writer, counts map[string]uint64) {
	if len(counts) == 0 {
		fmt.Fprintln(w, "    (none)")
		return
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "    %s\t%d\n", n, counts[n])
	}
	tw.Flush()
}
