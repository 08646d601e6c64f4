package relay

import (
	"errors"
	"net/netip"

	"github.com/unmap-dev/unmap/control"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
)

// Why a carrier packet did not bind; each is counted under its text.
var (
	errNoCarrier = errors.New("bind-no-carrier")    // no flow leased this relay port to this public address
	errToken     = errors.New("bind-bad-token")     // the packet does not carry the flow's token: another host, or a stale packet
	errBound     = errors.New("bind-already-bound") // bound to another CGNAT port (a rebinding, not handled yet)
	errEarly     = errors.New("early")              // no carrier yet, but its FlowOpen may be on the way: held (early.go)
)

// bind binds a carrier on its first packet: key is the packet's key as the
// relay program saw it (CGNAT public address and port C to relay address
// and port R), l4 its bytes from the L4 header on. The packet must carry
// the token the edge announced, a value no NAT rewrites, so another host
// behind the same CGNAT address cannot take the carrier.
// bound is a carrier that a packet bound (or found bound).
type bound struct {
	flow    session.Flow
	carrier session.Carrier
	inbound bool // the packet was the edge's opener: it goes no further
	// hs: the carrier is in its TCP handshake, the packet one of its
	// segments; no entries are in yet.
	hs *tcpHandshake
}

// carrierPacket binds the carrier of a packet the datapath missed and
// sends the packet on through it; whole says frame is the entire packet
// (else only its start was handed over, and the sender resends).
func (c *carriers) carrierPacket(key xlat.Key, frame []byte, whole bool) {
	keep := frame
	if !whole {
		keep = nil
	}
	b, err := c.bind(key, frame[min(len(frame), 14+20):], keep)
	if err != nil {
		if err != errEarly {
			c.log.Debug("carrier not bound", "key", key, "err", err)
		}
		return
	}
	if c.dp == nil {
		return
	}
	if b.hs != nil {
		c.handshakeStep(c.dp, b, frame) // consumed: the handshake's own segments
		return
	}
	if b.inbound {
		c.release(c.dp, b.flow, b.carrier) // the opener itself stops here
		return
	}
	switch {
	case !whole: // only part was handed over: the sender resends
	case ttlExpired(frame, c.dp.cfg.CarrierAddr):
		c.timeExceeded(c.dp, frame) // the datapath's ttl-to-agent, or a first packet
	default:
		c.dp.send(b.flow, b.carrier, [][]byte{frame}, c.count)
	}
}

// bind binds key's carrier with the packet's L4 bytes; frame, if not nil,
// is the whole packet, which may be held for a FlowOpen still on its way.
func (c *carriers) bind(key xlat.Key, l4, frame []byte) (bound, error) {
	b, ss, err := c.bindLocked(key, l4, frame)
	if ss != nil {
		if err := ss.Bound(&proto.CarrierBound{Flow: b.flow, Public: b.carrier.Public}); err != nil {
			c.log.Debug("carrier bound not sent", "flow", b.flow, "err", err)
		}
	}
	return b, err
}

func (c *carriers) bindLocked(key xlat.Key, l4, frame []byte) (bound, *control.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lk := leaseKey{ports.Key{Relay: key.Dst, Public: key.Src, Proto: session.Proto(key.Proto)}, key.DPort}
	f, ok := c.byLease[lk]
	if !ok {
		if c.holdEarlyLocked(lk, key, frame) {
			return bound{}, nil, errEarly
		}
		c.countLocked(errNoCarrier.Error())
		return bound{}, nil, errNoCarrier
	}
	k := c.flows[f]
	public := netip.AddrPortFrom(key.Src, key.SPort)
	switch {
	case k.public == public:
		return bound{f, k.carrier(), k.inbound, k.hs}, nil, nil // a packet that raced the entries in, or the handshake's next
	case k.public.IsValid():
		c.countLocked(errBound.Error())
		return bound{}, nil, errBound
	}
	if t, ok := session.Token(session.Proto(key.Proto), l4); !ok || proto.BindToken(t) != k.token {
		c.countLocked(errToken.Error())
		return bound{}, nil, errToken
	}
	k.public = public
	if k.hs != nil {
		// The carrier SYN: entries and CarrierBound wait for the
		// edge's completing ACK (handshake.go).
		c.countLocked("bound")
		return bound{f, k.carrier(), k.inbound, k.hs}, nil, nil
	}
	if !c.mapCarrier(f, k) {
		k.public = netip.AddrPort{}
		return bound{}, nil, errors.New("datapath refused the entries")
	}
	c.countLocked("bound")
	return bound{f, k.carrier(), k.inbound, nil}, c.live[k.site], nil
}
