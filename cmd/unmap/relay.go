package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/cmd/unmap/privdrop"
	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/relay"
	"github.com/unmap-dev/unmap/xdp"
)

func newRelayCmd() *cobra.Command {
	var (
		path   string
		check  bool
		unpin  bool
		socket string
		over   relay.Config
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run the relay agent on the Internet server",
		Long: `Run the relay agent: accept edges on the control channel, grant them their
prefixes and carriers, and translate in XDP. Settings come from --config; a
flag given on the command line overrides the file's field of the same name.

The agent pins its XDP maps and link under pin_path, so the sites'
established flows keep forwarding while it is stopped or restarted; the next
start takes them back as the edges replay them. A stop keeps the pins;
--unpin removes them (ending those flows).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var c relay.Config
			if err := config.Load(path, &c); err != nil {
				return err
			}
			f := cmd.Flags()
			overrideString(f.Changed("listen"), &c.Listen, over.Listen)
			overrideString(f.Changed("interface"), &c.Interface, over.Interface)
			overrideString(f.Changed("carrier-ports"), &c.CarrierPorts, over.CarrierPorts)
			s, err := c.Validate()
			if err != nil {
				return config.InFile(fileName(path), err)
			}
			if unpin {
				// The maps and link the agent pins so that the sites'
				// flows outlive it: removing them ends those flows.
				if err := xdp.Unpin(s.PinPath); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s: the sites' flows are gone from the datapath\n", s.PinPath)
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
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d sites, listening on %v)\n", path, len(s.Sites), s.Listen)
				return nil
			}
			return relay.Run(cmd.Context(), s, relay.Options{Version: buildVersion(), StatusSocket: socket, Log: slog.Default(),
				Drop: dropPrivileges(privdrop.Relay, s.User, socket)})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", "/etc/unmap/relay.yaml", "relay.yaml to read")
	f.BoolVar(&check, "check", false, "validate the configuration and exit")
	f.BoolVar(&unpin, "unpin", false, "remove the pinned maps and XDP link (pin_path) a stopped agent left forwarding, and exit")
	f.StringVar(&socket, "status-socket", relaySocket, "where `unmap status` asks; empty for none")
	f.StringVar(&over.Listen, "listen", "", "override listen (addr:port)")
	f.StringVar(&over.Interface, "interface", "", "override interface")
	f.StringVar(&over.CarrierPorts, "carrier-ports", "", "override carrier_ports")
	cmd.AddCommand(newRelayLookupCmd())
	return cmd
}
