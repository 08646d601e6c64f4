package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/cmd/unmap/privdrop"
	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/edge"
	"github.com/unmap-dev/unmap/xdp"
)

func newEdgeCmd() *cobra.Command {
	var (
		path   string
		check  bool
		unpin  bool
		socket string
		over   edge.Config
	)
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run the edge agent on the site's router",
		Long: `Run the edge agent: hold the control channel to the relay and translate the
site's flows in XDP. Settings come from --config; a flag given on the command
line overrides the file's field of the same name.

The agent pins its XDP maps and links under pin_path, so established flows
keep forwarding while it is stopped or restarted, and the next start takes
them back. A stop keeps the pins; --unpin removes them (ending those flows).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var c edge.Config
			if err := config.Load(path, &c); err != nil {
				return err
			}
			f := cmd.Flags()
			overrideString(f.Changed("site"), &c.Site, over.Site)
			overrideString(f.Changed("relay"), &c.Relay, over.Relay)
			overrideString(f.Changed("lan"), &c.LAN, over.LAN)
			overrideString(f.Changed("wan"), &c.WAN, over.WAN)
			overrideString(f.Changed("carrier-ports"), &c.CarrierPorts, over.CarrierPorts)
			overrideString(f.Changed("keepalive"), &c.Keepalive, over.Keepalive)
			s, err := c.Validate()
			if err != nil {
				return config.InFile(fileName(path), err)
			}
			if unpin {
				// The maps and links the agent pins so that its flows
				// outlive it: removing them ends those flows.
				if err := xdp.Unpin(s.PinPath); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s: the site's flows are gone from the datapath\n", s.PinPath)
				return nil
			}
			if check {
				// The TLS files too: a key the agent cannot read, or a
				// certificate the peer will refuse, is found now.
				note, err := s.CheckTLS(time.Now())
				if err != nil {
					return config.InFile(fileName(path), err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), note)
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (site %s, relay %s)\n", path, s.Site, s.Relay)
				return nil
			}
			return edge.Run(cmd.Context(), s, edge.Options{Version: buildVersion(), StatusSocket: socket, Log: slog.Default(),
				Drop: dropPrivileges(privdrop.Edge, s.User, socket)})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", "/etc/unmap/edge.yaml", "edge.yaml to read")
	f.BoolVar(&check, "check", false, "validate the configuration and exit")
	f.BoolVar(&unpin, "unpin", false, "remove the pinned maps and XDP links (pin_path) a stopped agent left forwarding, and exit")
	f.StringVar(&socket, "status-socket", edgeSocket, "where `unmap status` asks; empty for none")
	f.StringVar(&over.Site, "site", "", "override site")
	f.StringVar(&over.Relay, "relay", "", "override relay (host:port)")
	f.StringVar(&over.LAN, "lan", "", "override lan_interface")
	f.StringVar(&over.WAN, "wan", "", "override wan_interface")
	f.StringVar(&over.CarrierPorts, "carrier-ports", "", "override carrier_ports")
	f.StringVar(&over.Keepalive, "keepalive", "", "override keepalive")
	return cmd
}
