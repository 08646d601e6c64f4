package relay

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/proto"
)

// serverConfig is the control server of the relay: its identity, the
// edges' CA, the sites it grants, and the secrets that must outlive a
// restart. The QUIC stateless reset key and the TLS session ticket key
// are derived from the relay's private key (pki.DeriveSecret): a
// restarted relay answers an edge's next packet on its old connection
// with a stateless reset, so the edge reconnects within one keepalive
// instead of at the idle timeout (3 × 15 s), and resumes its TLS session
// instead of a full handshake.
func serverConfig(s *Settings, id *pki.Identity, cert tls.Certificate, cas *x509.CertPool, c *agent, log *slog.Logger) (control.ServerConfig, error) {
	reset, err := pki.DeriveSecret(id.Key, pki.PurposeStatelessReset)
	if err != nil {
		return control.ServerConfig{}, err
	}
	ticket, err := pki.DeriveSecret(id.Key, pki.PurposeSessionTicket)
	if err != nil {
		return control.ServerConfig{}, err
	}
	return control.ServerConfig{
		Addr:              s.Listen.String(),
		Identity:          cert,
		ClientCAs:         cas,
		StatelessResetKey: &reset,
		TicketKeys:        [][32]byte{ticket},
		Authorize:         func(site string, _ *proto.Hello) (*proto.Welcome, error) { return s.grant(site, keepalive) },
		Handler:           c,
		Counters:          c.pongCounters,
		Log:               log,
	}, nil
}
