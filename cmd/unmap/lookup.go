package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/cgnat"
	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/relay"
)

func newRelayLookupCmd() *cobra.Command {
	var (
		path    string
		at      string
		logFile string
	)
	cmd := &cobra.Command{
		Use:   "lookup ADDR:PORT",
		Short: "Say which CGNAT subscriber held a public address:port",
		Long: `Answer which subscriber of the relay's CGNAT held a public address and port
at a time (--at, RFC 3339; default now). In dynamic mode the answer comes from
the block log (cgnat.log in relay.yaml): the block granted over that port and
not yet released then. In deterministic mode it is computed from the
configuration: the same subscriber holds the port at all times, and no log
is needed. When cgnat.log sends the records to syslog, --log names the file
the syslog collector wrote them to (each message carries the record's JSON).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ap, err := netip.ParseAddrPort(args[0])
			if err != nil || !ap.Addr().Is4() {
				return fmt.Errorf("%q is not an IPv4 address:port", args[0])
			}
			when := time.Now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at %q: want RFC 3339, like 2026-12-03T05:00:00Z", at)
				}
			}
			var c relay.Config
			if err := config.Load(path, &c); err != nil {
				return err
			}
			s, err := c.Validate()
			if err != nil {
				return config.InFile(fileName(path), err)
			}
			if s.CGNAT == nil {
				return errors.New("relay.yaml has no cgnat section")
			}
			out := cmd.OutOrStdout()
			if s.CGNAT.Deterministic {
				ans, ok := cgnat.LookupDeterministic(s.CGNAT, ap.Addr(), ap.Port())
				if !ok {
					return fmt.Errorf("%v is no block port of the pool", ap)
				}
				fmt.Fprintf(out, "%v: subscriber %v (deterministic mode: at any time)\n", ap, ans.Subscriber)
				return nil
			}
			file, lookup := s.CGNAT.Log, cgnat.LookupLog
			switch {
			case logFile != "":
				file = logFile
				if cgnat.IsSyslog(s.CGNAT.Log) {
					lookup = cgnat.LookupSyslog
				}
			case cgnat.IsSyslog(s.CGNAT.Log):
				return fmt.Errorf("cgnat.log is %s: the records are at the syslog collector; name the file it wrote with --log", s.CGNAT.Log)
			}
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			ans, ok, err := lookup(f, ap.Addr(), ap.Port(), when)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%v: no subscriber held it at %s (block log %s)", ap, when.UTC().Format(time.RFC3339), file)
			}
			until := "still held then"
			if !ans.Until.IsZero() {
				until = "until " + ans.Until.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(out, "%v: subscriber %v, block %v:%d-%d granted %s, %s\n", ap, ans.Subscriber, ans.Record.Address,
				ans.Record.PortFirst, ans.Record.PortLast, ans.Since.UTC().Format(time.RFC3339), until)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "config", "c", "/etc/unmap/relay.yaml", "relay.yaml to read")
	f.StringVar(&at, "at", "", "the time to answer for (RFC 3339); default now")
	f.StringVar(&logFile, "log", "", "the block log to read instead of cgnat.log's file (with cgnat.log syslog: the collector's file)")
	return cmd
}
