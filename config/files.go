package config

import (
	"net"
	"strconv"

	"github.com/unmap-dev/unmap/session"
)

// TLSFiles names the PEM files of an agent's identity: its certificate
// and key, and the CA that signs its peers.
type TLSFiles struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Check says which file is missing from the config (not from the disk:
// that is found when the agent starts and names the path).
func (t TLSFiles) Check(field string) error {
	switch {
	case t.CA == "":
		return Errorf(field+".ca", "missing (the CA certificate that signs the peer)")
	case t.Cert == "":
		return Errorf(field+".cert", "missing")
	case t.Key == "":
		return Errorf(field+".key", "missing")
	}
	return nil
}

// CheckSiteID accepts what a certificate can carry as a site id (the rule
// is session.ValidSiteID, control/pki's too, so a config can name every site a certificate can).
func CheckSiteID(field, id string) error {
	if !session.ValidSiteID(id) {
		return Errorf(field, "%q is not a site id (lowercase letters, digits and inner '-', 1 to 63 characters)", id)
	}
	return nil
}

// CheckHostPort accepts "relay.example.net:443" or "[2001:db8::1]:443".
func CheckHostPort(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err == nil && host != "" {
		if p, perr := strconv.ParseUint(port, 10, 16); perr == nil && p != 0 {
			return nil
		}
	}
	return Errorf(field, "%q is not host:port", s)
}
