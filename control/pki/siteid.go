package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/unmap-dev/unmap/session"
)

// SiteScheme and siteHost make the URI SAN unmap://site/<id>.
const (
	SiteScheme = "unmap"
	siteHost   = "site"
)

// MaxSiteIDLen is the longest site id: one DNS label.
const MaxSiteIDLen = session.MaxSiteIDLen

// Errors about site ids; they work with errors.Is.
var (
	ErrBadSiteID = errors.New("not a site id (lowercase letters, digits and inner '-', 1 to 63 characters)")
	ErrNoSiteID  = errors.New("certificate names no site (no unmap://site/<id> URI SAN)")
	ErrTwoSites  = errors.New("certificate names more than one site")
)

// CheckSiteID accepts a DNS label in lowercase: letters, digits and
// hyphens that neither start nor end it, 1 to 63 characters. The rule is
// session.ValidSiteID, which config.CheckSiteID applies to configs too.
func CheckSiteID(id string) error {
	if !session.ValidSiteID(id) {
		return fmt.Errorf("%q: %w", clip(id), ErrBadSiteID)
	}
	return nil
}

// SiteURI is the URI SAN that names site id.
func SiteURI(id string) *url.URL {
	return &url.URL{Scheme: SiteScheme, Host: siteHost, Path: "/" + id}
}

// SiteID returns the site id an edge certificate names. Exactly one
// unmap://site/<id> URI SAN must be present and its id must be valid;
// other URI SANs are ignored. It does not verify the certificate: call it
// on a certificate the TLS handshake has verified.
func SiteID(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", ErrNoSiteID
	}
	var id string
	found := false
	for _, u := range cert.URIs {
		if !strings.EqualFold(u.Scheme, SiteScheme) || !strings.EqualFold(u.Host, siteHost) {
			continue
		}
		if found {
			return "", ErrTwoSites
		}
		found = true
		// Exactly "/<id>": no query, fragment, user or further segments,
		// so two spellings cannot name the same site.
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" ||
			!strings.HasPrefix(u.Path, "/") || u.RawPath != "" {
			return "", fmt.Errorf("URI SAN %q: %w", clip(u.String()), ErrBadSiteID)
		}
		id = u.Path[1:]
		if err := CheckSiteID(id); err != nil {
			return "", err
		}
	}
	if !found {
		return "", ErrNoSiteID
	}
	return id, nil
}

// clip keeps error messages short when the input is hostile.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
