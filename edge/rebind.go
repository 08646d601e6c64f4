package edge

import (
	"time"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// proveEvery bounds the token keepalives sent for one carrier: the relay
// asks at most once a second, and one answer that gets through is enough.
const proveEvery = 500 * time.Millisecond

var _ control.MoveHandler = (*agent)(nil)

// Moved answers the relay's CarrierMoved: packets of one of our UDP
// carriers arrive at the relay from another port of our CGNAT address.
// The edge cannot tell whether its CGNAT moved the carrier or another
// host behind it is knocking, and need not: it sends a token keepalive on
// the carrier. If the CGNAT moved it, the keepalive leaves from the new
// port and the relay re-binds the carrier there (CarrierBound, next
// generation); if not, it arrives on the carrier as bound and the relay's
// datapath consumes it.
func (a *agent) Moved(m *proto.CarrierMoved) {
	e, ok := a.flows.Get(m.Flow)
	if !ok || e.Carrier.Proto != session.UDP || !e.Carrier.Relay.IsValid() || a.dp == nil {
		a.m.Inc(mMovedUnknownCarrier)
		return
	}
	token, ok := a.binds.prove(m.Flow, time.Now(), proveEvery)
	if !ok {
		a.m.Inc(mMovedSuppressed)
		return
	}
	pkt, err := udp4(e.Carrier, xlat.TokenKeepalive(uint64(token)))
	if err == nil {
		err = a.dp.Inj.Packet(pkt)
	}
	if err != nil {
		a.m.Inc(mRebindProofFailed)
		a.log.Debug("token keepalive not sent", "flow", m.Flow, "err", err)
		return
	}
	a.m.Inc(mRebindProofSent)
	a.log.Debug("carrier seen from another CGNAT port: token keepalive sent", "flow", m.Flow, "seen", m.Public, "bound", e.Carrier.Public)
}
