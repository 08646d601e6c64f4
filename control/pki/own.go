package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// ExpiryWarning is how long before its certificate ends an agent starts
// warning about it, at start and then periodically (WatchExpiry): two
// weeks leave time to issue and install a new one.
const ExpiryWarning = 14 * 24 * time.Hour

// Errors of an agent's check of its own certificate; wrapped with the
// dates.
var (
	ErrExpired     = errors.New("certificate has expired")
	ErrNotYetValid = errors.New("certificate is not valid yet (is the clock right?)")
	ErrNotServer   = errors.New("certificate is not for a TLS server (extended key usage lacks serverAuth): a relay needs a relay certificate (`unmap cert relay`)")
	ErrNotClient   = errors.New("certificate is not for a TLS client (extended key usage lacks clientAuth): an edge needs an edge certificate (`unmap cert edge`)")
)

// CheckValid checks that cert is valid at now and returns how long it
// has left. A peer refuses an expired certificate in the handshake with
// one alert that does not say why, so each agent checks its own first.
func CheckValid(cert *x509.Certificate, now time.Time) (time.Duration, error) {
	switch {
	case now.After(cert.NotAfter):
		return 0, fmt.Errorf("%w (on %s)", ErrExpired, cert.NotAfter.UTC().Format(time.DateTime))
	case now.Before(cert.NotBefore):
		return 0, fmt.Errorf("%w (from %s)", ErrNotYetValid, cert.NotBefore.UTC().Format(time.DateTime))
	}
	return cert.NotAfter.Sub(now), nil
}

// usable reports whether cert may be used for want: no extended key
// usage at all means any (as crypto/x509 verifies it).
func usable(cert *x509.Certificate, want x509.ExtKeyUsage) bool {
	return len(cert.ExtKeyUsage) == 0 || slices.Contains(cert.ExtKeyUsage, want) || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// CheckServer checks the relay's own certificate: valid at now and
// meant for a TLS server, which every edge will insist on.
func CheckServer(cert *x509.Certificate, now time.Time) (time.Duration, error) {
	if !usable(cert, x509.ExtKeyUsageServerAuth) {
		return 0, ErrNotServer
	}
	return CheckValid(cert, now)
}

// CheckEdge checks an edge's own certificate: valid at now, meant for a
// TLS client, and naming site, as the relay will insist.
func CheckEdge(cert *x509.Certificate, site string, now time.Time) (time.Duration, error) {
	if !usable(cert, x509.ExtKeyUsageClientAuth) {
		return 0, ErrNotClient
	}
	got, err := SiteID(cert)
	if err != nil {
		return 0, err
	}
	if got != site {
		return 0, fmt.Errorf("certificate names site %q, the config %q", got, site)
	}
	return CheckValid(cert, now)
}

// WatchExpiry checks cert every period until ctx ends and logs a
// warning while it ends within ExpiryWarning, an error once it has
// ended (a running agent keeps its sessions, but its next handshake
// fails). what names the certificate in the log (its file). now is the
// clock; nil means time.Now.
func WatchExpiry(ctx context.Context, cert *x509.Certificate, what string, log *slog.Logger, period time.Duration, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		LogExpiry(cert, what, log, now())
	}
}

// LogExpiry logs what WatchExpiry logs, once.
func LogExpiry(cert *x509.Certificate, what string, log *slog.Logger, now time.Time) {
	left, err := CheckValid(cert, now)
	switch {
	case err != nil:
		log.Error("certificate not valid: the next handshake will fail", "cert", what, "err", err)
	case left < ExpiryWarning:
		log.Warn("certificate expires soon: issue a new one", "cert", what, "expires", cert.NotAfter.UTC().Format(time.DateTime), "left", left.Round(time.Hour))
	}
}
