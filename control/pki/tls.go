package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Reason names why a peer's certificate was refused, for counters and
// logs. The values are stable: operators graph them.
type Reason string

const (
	ReasonNoCert    Reason = "no-certificate" // the client sent none
	ReasonBadCert   Reason = "malformed"      // it did not parse
	ReasonExpired   Reason = "expired"        // outside NotBefore..NotAfter (either side)
	ReasonUnknownCA Reason = "unknown-ca"     // not signed by our CA
	ReasonUsage     Reason = "wrong-usage"    // signed by our CA, but not for this role (a relay cert used by an edge)
	ReasonNoSite    Reason = "no-site-id"     // no valid unmap://site/<id>
	ReasonWrongName Reason = "wrong-name"     // the relay's certificate does not name the address dialled
	ReasonInvalid   Reason = "invalid"        // any other verification failure
)

// RefusedError says why a certificate was refused; errors.Is also
// matches the underlying x509 or site-id error.
type RefusedError struct {
	Reason  Reason
	Err     error
	Subject string   // the refused certificate's subject, "" if there was none
	Remote  net.Addr // the peer's address, when the server knows it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("certificate refused (%s): %v", e.Reason, e.Err)
}
func (e *RefusedError) Unwrap() error { return e.Err }

// Classify names the reason behind a certificate verification error,
// from a *RefusedError or the x509 error types crypto/tls returns on the
// client side. Errors it does not recognise are ReasonInvalid.
func Classify(err error) Reason {
	var re *RefusedError
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &re):
		return re.Reason
	case errors.As(err, &inv):
		switch inv.Reason {
		case x509.Expired:
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonUsage
		}
	case errors.As(err, &ua):
		return ReasonUnknownCA
	case errors.As(err, &host):
		return ReasonWrongName
	case errors.Is(err, ErrNoSiteID), errors.Is(err, ErrBadSiteID), errors.Is(err, ErrTwoSites):
		return ReasonNoSite
	}
	return ReasonInvalid
}

// ServerOptions tune ServerConfig; the zero value is usable.
type ServerOptions struct {
	NextProtos []string            // ALPN, such as "unmap/1"
	Time       func() time.Time    // clock for validity checks; nil means time.Now
	Refused    func(*RefusedError) // called once for each refused client, to count it; may be nil
}

// ServerConfig is the relay's TLS 1.3 configuration: it presents id and
// requires a client certificate that chains to clientCAs, is meant for
// client authentication, and names a valid site.
//
// It verifies the client chain itself (in VerifyConnection) rather than
// leaving it to crypto/tls, so each refusal has a Reason and reaches
// o.Refused: a handshake that fails inside quic-go never reaches the
// relay's code otherwise. crypto/tls still checks that the client holds
// the certificate's key. o.Time is the clock of both the handshake and
// this check. Because of that, ConnectionState.VerifiedChains
// is empty on the server: use PeerSite, which trusts this configuration's
// verification.
func ServerConfig(id tls.Certificate, clientCAs *x509.CertPool, o ServerOptions) *tls.Config {
	verify := func(remote net.Addr) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			if _, err := verifyClient(cs.PeerCertificates, clientCAs, o.Time); err != nil {
				err.Remote = remote
				if o.Refused != nil {
					o.Refused(err)
				}
				return err
			}
			return nil
		}
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id},
		// Request, not require: a client without a certificate then
		// reaches VerifyConnection and is counted as no-certificate.
		// crypto/tls still checks the signature of any it sends.
		ClientAuth:       tls.RequestClientCert,
		NextProtos:       o.NextProtos,
		Time:             o.Time,
		VerifyConnection: verify(nil),
	}
	// The refusal names the peer's address (the relay logs it, since the
	// edge hears only bad_certificate): the connection's own config,
	// cloned from this one, knows it. quic-go gives ClientHelloInfo a
	// Conn with the addresses; crypto/tls over TCP does too.
	c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		cc := c.Clone()
		cc.GetConfigForClient = nil
		if hi.Conn != nil {
			cc.VerifyConnection = verify(hi.Conn.RemoteAddr())
		}
		return cc, nil
	}
	return c
}

// verifyClient returns the site id of a verified edge chain.
func verifyClient(chain []*x509.Certificate, roots *x509.CertPool, clock func() time.Time) (string, *RefusedError) {
	if len(chain) == 0 {
		return "", &RefusedError{Reason: ReasonNoCert, Err: errors.New("client sent no certificate")}
	}
	now := time.Now()
	if clock != nil {
		now = clock()
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", &RefusedError{Reason: Classify(err), Err: err, Subject: chain[0].Subject.String()}
	}
	site, err := SiteID(chain[0])
	if err != nil {
		return "", &RefusedError{Reason: ReasonNoSite, Err: err, Subject: chain[0].Subject.String()}
	}
	return site, nil
}

// CheckClient checks an edge's own certificate the way the relay's
// ServerConfig will, and returns its site id. The relay answers every
// refusal with the same TLS alert (bad_certificate: crypto/tls sends no
// other from VerifyConnection), so an edge that calls this before it
// dials can log the real reason, such as its certificate having expired.
func CheckClient(id tls.Certificate, cas *x509.CertPool, now time.Time) (string, error) {
	chain := make([]*x509.Certificate, 0, len(id.Certificate))
	for i, der := range id.Certificate {
		if i == 0 && id.Leaf != nil {
			chain = append(chain, id.Leaf)
			continue
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", &RefusedError{Reason: ReasonBadCert, Err: err}
		}
		chain = append(chain, c)
	}
	site, err := verifyClient(chain, cas, func() time.Time { return now })
	if err != nil {
		return "", err
	}
	return site, nil
}

// PeerSite is the site id of the edge on a connection accepted with
// ServerConfig, whose VerifyConnection has already verified the chain.
func PeerSite(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", &RefusedError{Reason: ReasonNoCert, Err: errors.New("no client certificate")}
	}
	return SiteID(cs.PeerCertificates[0])
}

// ClientOptions tune ClientConfig.
type ClientOptions struct {
	ServerName string           // name the relay's certificate must hold (DNS name or IP)
	NextProtos []string         // ALPN, such as "unmap/1"
	Time       func() time.Time // clock for validity checks; nil means time.Now
}

// ClientConfig is the edge's TLS 1.3 configuration: it presents id and
// accepts only a relay certificate that chains to relayCAs and names
// o.ServerName. Use Classify on a dial error to name why it failed.
func ClientConfig(id tls.Certificate, relayCAs *x509.CertPool, o ClientOptions) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id},
		RootCAs:      relayCAs,
		ServerName:   o.ServerName,
		NextProtos:   o.NextProtos,
		Time:         o.Time,
	}
}
