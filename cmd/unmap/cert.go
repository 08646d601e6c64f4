package main

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/unmap-dev/unmap/control/pki"
)

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make the CA and the relay and edge certificates of the control channel",
		Long: `Make the private CA of a deployment and the certificates it signs:

  unmap cert ca    --out ca/
  unmap cert relay --ca ca/ --name relay.example.net --ip 198.51.100.6 --out relay/
  unmap cert edge  --ca ca/ --site home --out home/
  unmap cert show  home/edge.pem

Keys are ECDSA P-256 in PKCS #8 PEM, written with mode 0600. The relay and
edge folders also get ca.pem, so each is complete for its machine. Existing
files are never overwritten without --force.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertCACmd(), newCertRelayCmd(), newCertEdgeCmd(), newCertShowCmd())
	return cmd
}

// certFlags are the flags every cert subcommand shares.
type certFlags struct {
	out   string
	days  int
	force bool
}

func (f *certFlags) add(cmd *cobra.Command, days int) {
	cmd.Flags().StringVar(&f.out, "out", "", "folder to write into (created if missing)")
	cmd.Flags().IntVar(&f.days, "days", days, "validity in days")
	cmd.Flags().BoolVar(&f.force, "force", false, "overwrite existing files")
	cmd.MarkFlagRequired("out")
}

func (f *certFlags) validity() (pki.Validity, error) {
	if f.days <= 0 {
		return pki.Validity{}, fmt.Errorf("--days %d: must be positive", f.days)
	}
	return pki.Validity{Length: time.Duration(f.days) * 24 * time.Hour}, nil
}

func newCertCACmd() *cobra.Command {
	var f certFlags
	var name string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Create a CA: ca.pem and ca-key.pem (keep the key offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := f.validity()
			if err != nil {
				return err
			}
			ca, err := pki.NewCA(name, v)
			if err != nil {
				return err
			}
			if err := ca.SaveCA(f.out, f.force); err != nil {
				return err
			}
			return report(cmd, ca.Cert.NotAfter, f.out, pki.CAFile, pki.CAKeyFile)
		},
	}
	f.add(cmd, int(pki.DefaultCAValidity/(24*time.Hour)))
	cmd.Flags().StringVar(&name, "name", "unmap CA", "common name of the CA")
	return cmd
}

func newCertRelayCmd() *cobra.Command {
	var f certFlags
	var caDir string
	var names, ips []string
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Issue the relay's server certificate: relay.pem, relay-key.pem, ca.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var addrs []netip.Addr
			for _, s := range ips {
				a, err := netip.ParseAddr(s)
				if err != nil || a.Zone() != "" {
					return fmt.Errorf("--ip %q: not an IP address", s)
				}
				addrs = append(addrs, a)
			}
			if len(names) == 0 && len(addrs) == 0 {
				return errors.New("give the names edges dial the relay by: --name and/or --ip")
			}
			return issue(cmd, &f, caDir, pki.RelayFile, pki.RelayKeyFile, func(ca *pki.CA, v pki.Validity) (*pki.Identity, error) {
				return ca.IssueRelay(names, addrs, v)
			})
		},
	}
	f.add(cmd, int(pki.DefaultLeafValidity/(24*time.Hour)))
	cmd.Flags().StringVar(&caDir, "ca", "", "folder holding ca.pem and ca-key.pem")
	cmd.Flags().StringArrayVar(&names, "name", nil, "DNS name of the relay (repeatable)")
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "IP address of the relay (repeatable)")
	cmd.MarkFlagRequired("ca")
	return cmd
}

func newCertEdgeCmd() *cobra.Command {
	var f certFlags
	var caDir, site string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Issue an edge's client certificate for a site: edge.pem, edge-key.pem, ca.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.CheckSiteID(site); err != nil {
				return fmt.Errorf("--site: %w", err)
			}
			return issue(cmd, &f, caDir, pki.EdgeFile, pki.EdgeKeyFile, func(ca *pki.CA, v pki.Validity) (*pki.Identity, error) {
				return ca.IssueEdge(site, v)
			})
		},
	}
	f.add(cmd, int(pki.DefaultLeafValidity/(24*time.Hour)))
	cmd.Flags().StringVar(&caDir, "ca", "", "folder holding ca.pem and ca-key.pem")
	cmd.Flags().StringVar(&site, "site", "", "site id, as in the relay's sites list")
	cmd.MarkFlagRequired("ca")
	cmd.MarkFlagRequired("site")
	return cmd
}

// issue loads the CA, signs with sign, and writes the leaf and ca.pem.
func issue(cmd *cobra.Command, f *certFlags, caDir, certName, keyName string,
	sign func(*pki.CA, pki.Validity) (*pki.Identity, error)) error {
	v, err := f.validity()
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return err
	}
	id, err := sign(ca, v)
	if err != nil {
		return err
	}
	if err := id.SaveBundle(f.out, certName, keyName, ca, f.force); err != nil {
		return err
	}
	return report(cmd, id.Cert.NotAfter, f.out, certName, keyName, pki.CAFile)
}

func report(cmd *cobra.Command, notAfter time.Time, dir string, names ...string) error {
	for _, n := range names {
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", filepath.Join(dir, n))
	}
	fmt.Fprintln(cmd.OutOrStdout(), "valid until", notAfter.UTC().Format(time.DateOnly))
	return nil
}

func newCertShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show FILE...",
		Short: "Describe certificates: kind, site, names, issuer, validity, fingerprint",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, path := range args {
				certs, err := pki.LoadCerts(path)
				if err != nil {
					return err
				}
				for _, c := range certs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s:\n%s\n", path, pki.Describe(c, time.Now()))
				}
			}
			return nil
		},
	}
}
