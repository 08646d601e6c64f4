package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Default lifetimes. The CA outlives many leaf renewals; leaves are
// short enough that a lost edge key expires within a renewal cycle.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour
	// Backdate tolerates peers whose clocks lag ours (a CPE that has not
	// synced NTP yet still accepts a relay certificate made a minute ago).
	Backdate = 5 * time.Minute
)

// Identity is a certificate with its private key.
type Identity struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// TLS returns id as crypto/tls wants it.
func (id *Identity) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key, Leaf: id.Cert}
}

// CA is the deployment's certificate authority: it signs the relay and
// every edge, and both trust only it.
type CA struct{ Identity }

// Pool is a pool holding only ca, for ServerConfig and ClientConfig.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Validity says when a certificate starts and how long it lasts. Zero
// NotBefore means now minus Backdate; zero Length means the default of
// the certificate's kind.
type Validity struct {
	NotBefore time.Time
	Length    time.Duration
}

func (v Validity) span(def time.Duration) (time.Time, time.Time, error) {
	nb := v.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-Backdate)
	}
	l := v.Length
	if l == 0 {
		l = def
	}
	if l < 0 {
		return nb, nb, fmt.Errorf("validity %v is negative", l)
	}
	nb = nb.UTC().Truncate(time.Second)
	return nb, nb.Add(l), nil
}

// NewCA makes a self-signed CA named name ("unmap CA" when empty).
func NewCA(name string, v Validity) (*CA, error) {
	if name == "" {
		name = "unmap CA"
	}
	nb, na, err := v.span(DefaultCAValidity)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(name, nb, na, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	// It signs leaves only: no intermediates below it.
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	cert, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &CA{Identity{cert, key}}, nil
}

// IssueRelay signs a server certificate for a relay reachable under
// names (DNS) and ips; at least one of them is needed, since the edge
// checks the relay's name.
func (ca *CA) IssueRelay(names []string, ips []netip.Addr, v Validity) (*Identity, error) {
	if len(names) == 0 && len(ips) == 0 {
		return nil, errors.New("relay certificate needs at least one DNS name or IP address")
	}
	tmpl, key, err := ca.leaf(firstName(names, ips), v)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err == nil {
			return nil, fmt.Errorf("%q is an IP address: give it as an IP, not a DNS name", n)
		}
		if !validDNSName(n) {
			return nil, fmt.Errorf("%q is not a DNS name", clip(n))
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	for _, ip := range ips {
		if !ip.IsValid() || ip.Zone() != "" {
			return nil, fmt.Errorf("%v is not an IP address", ip)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.finish(tmpl, key)
}

// IssueEdge signs a client certificate for the edge of site.
func (ca *CA) IssueEdge(site string, v Validity) (*Identity, error) {
	if err := CheckSiteID(site); err != nil {
		return nil, err
	}
	tmpl, key, err := ca.leaf(site, v)
	if err != nil {
		return nil, err
	}
	tmpl.URIs = append(tmpl.URIs, SiteURI(site))
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.finish(tmpl, key)
}

func (ca *CA) leaf(cn string, v Validity) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	nb, na, err := v.span(DefaultLeafValidity)
	if err != nil {
		return nil, nil, err
	}
	if na.After(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("certificate would end %s, after its CA (%s): shorten the validity or renew the CA",
			na.Format(time.DateOnly), ca.Cert.NotAfter.Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := template(cn, nb, na, &key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	return tmpl, key, nil
}

func (ca *CA) finish(tmpl *x509.Certificate, key *ecdsa.PrivateKey) (*Identity, error) {
	cert, err := sign(tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	return &Identity{cert, key}, nil
}

func template(cn string, nb, na time.Time, pub *ecdsa.PublicKey) (*x509.Certificate, error) {
	// 127 random bits: positive, unique without a serial database.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(der) // RFC 5280 §4.2.1.2 method 1 uses SHA-1 here; it is an identifier, not a signature.
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    nb,
		NotAfter:     na,
		SubjectKeyId: ski[:],
	}, nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func firstName(names []string, ips []netip.Addr) string {
	if len(names) > 0 {
		return names[0]
	}
	return ips[0].String()
}

// validDNSName accepts host names and one leading wildcard label.
func validDNSName(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	for i, label := range strings.Split(n, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
