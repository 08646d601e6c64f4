package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Describe is a few lines about cert for an operator: what it is for,
// the site or names it holds, who signed it, when it is valid (against
// now) and its SHA-256 fingerprint, which is what to compare between
// machines.
func Describe(cert *x509.Certificate, now time.Time) string {
	var b strings.Builder
	kind := "certificate"
	switch {
	case cert.IsCA:
		kind = "CA"
	case hasUsage(cert, x509.ExtKeyUsageServerAuth):
		kind = "relay (server)"
	case hasUsage(cert, x509.ExtKeyUsageClientAuth):
		kind = "edge (client)"
	}
	fmt.Fprintf(&b, "kind:        %s\n", kind)
	fmt.Fprintf(&b, "subject:     %s\n", cert.Subject.CommonName)
	if site, err := SiteID(cert); err == nil {
		fmt.Fprintf(&b, "site:        %s\n", site)
	} else if kind == "edge (client)" {
		fmt.Fprintf(&b, "site:        none (%v)\n", err)
	}
	if len(cert.DNSNames) > 0 {
		fmt.Fprintf(&b, "dns names:   %s\n", strings.Join(cert.DNSNames, ", "))
	}
	if len(cert.IPAddresses) > 0 {
		ips := make([]string, len(cert.IPAddresses))
		for i, ip := range cert.IPAddresses {
			ips[i] = ip.String()
		}
		fmt.Fprintf(&b, "ip:          %s\n", strings.Join(ips, ", "))
	}
	fmt.Fprintf(&b, "issuer:      %s\n", cert.Issuer.CommonName)
	state := "valid"
	switch {
	case now.Before(cert.NotBefore):
		state = "NOT YET VALID"
	case now.After(cert.NotAfter):
		state = "EXPIRED"
	}
	fmt.Fprintf(&b, "valid:       %s to %s (%s)\n", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), state)
	sum := sha256.Sum256(cert.Raw)
	fmt.Fprintf(&b, "sha256:      %s\n", hex.EncodeToString(sum[:]))
	return b.String()
}

func hasUsage(cert *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, x := range cert.ExtKeyUsage {
		if x == u {
			return true
		}
	}
	return false
}
