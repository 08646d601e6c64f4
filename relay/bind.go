package relay

import (
	"errors"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
)

// Why a carrier packet did not bind; each is counted under its text.
var (
	errNoCarrier = errors.New("bind-no-carrier")    // no flow leased this relay port to this public address
	errToken     = errors.New("bind-bad-token")     // the packet does not carry the flow's token: another host, or a stale packet
	errBound     = errors.New("bind-already-bound") // bound to another CGNAT port: a rebinding (the edge is asked to prove it) or another host
	errRebind    = errors.New("rebind-bad-token")   // a token keepalive from another port with the wrong token
	errEarly     = errors.New("early")              // no carrier yet, but its FlowOpen may be on the way: held (early.go)
)

// movedEvery bounds how often the edge is asked to prove one carrier
// (CarrierMoved): a rebinding needs one answer, and a host spraying the
// relay's ports from the edge's CGNAT address must not turn into a flood
// of control messages.
const movedEvery = time.Second

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
	hs    *tcpHandshake
	proof bool // the packet was the edge's token keepalive: it goes no further
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
	if b.proof {
		return // the edge's token keepalive re-bound the carrier and stops here
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
	b, tell, err := c.bindLocked(key, l4, frame)
	if tell != nil {
		tell()
	}
	return b, err
}

// bindLocked binds, re-binds or refuses; tell, if not nil, sends what the
// edge must hear of it, once c.mu is released.
func (c *carriers) bindLocked(key xlat.Key, l4, frame []byte) (_ bound, tell func(), _ error) {
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
		return bound{f, k.carrier(), k.inbound, k.hs, false}, nil, nil // a packet that raced the entries in, or the handshake's next
	case k.public.IsValid() && k.public.Addr() == public.Addr() && k.lease.Proto == session.UDP && k.hs == nil:
		return c.rebindLocked(f, k, public, l4)
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
		return bound{f, k.carrier(), k.inbound, k.hs, false}, nil, nil
	}
	if !c.mapCarrier(f, k) {
		k.public = netip.AddrPort{}
		return bound{}, nil, errors.New("datapath refused the entries")
	}
	c.countLocked("bound")
	return bound{f, k.carrier(), k.inbound, nil, false}, c.tellBound(f, k), nil
}

// rebindLocked handles a packet of a bound UDP carrier that arrives from
// another port of the CGNAT address it is bound to: the CGNAT moved the
// carrier (its mapping expired or was flushed), or another host behind
// the same address wants it. Only the edge can tell: an ordinary packet
// is refused and the edge asked (CarrierMoved) to send a token keepalive
// on the carrier; a token keepalive with the carrier's token re-binds it
// to the port it came from. The rogue's packets never carry the token,
// and the edge's answer to a rogue's packet leaves from the carrier's
// real port, where the bound entry consumes it.
func (c *carriers) rebindLocked(f session.Flow, k *carrier, public netip.AddrPort, l4 []byte) (bound, func(), error) {
	t, isProof := xlat.KeepaliveToken(l4)
	if !isProof {
		c.countLocked(errBound.Error())
		ss := c.live[k.site]
		if ss == nil || c.now().Sub(k.movedAsked) < movedEvery {
			c.countLocked("moved-not-asked") // no session, or asked a moment ago
			return bound{}, nil, errBound
		}
		k.movedAsked = c.now()
		c.countLocked("moved-asked")
		return bound{}, func() {
			if err := ss.Moved(&proto.CarrierMoved{Flow: f, Public: public}); err != nil {
				c.log.Debug("carrier moved not sent", "flow", f, "err", err)
			}
		}, errBound
	}
	if proto.BindToken(t) != k.token {
		c.countLocked(errRebind.Error())
		return bound{}, nil, errRebind
	}
	old := k.carrier()
	if c.dp != nil {
		c.dp.unmap(f, old)
	}
	k.public = public
	if !c.mapCarrier(f, k) {
		k.public = old.Public
		c.mapCarrier(f, k)
		return bound{}, nil, errors.New("datapath refused the re-bound entries")
	}
	k.rebinds++
	c.countLocked("rebound")
	c.log.Info("carrier re-bound", "flow", f, "from", old.Public, "to", public, "generation", k.rebinds)
	return bound{flow: f, carrier: k.carrier(), proof: true}, c.tellBound(f, k), nil
}

// tellBound is the CarrierBound for k's binding, to be sent without c.mu.
func (c *carriers) tellBound(f session.Flow, k *carrier) func() {
	ss := c.live[k.site]
	if ss == nil {
		return nil
	}
	m := &proto.CarrierBound{Flow: f, Public: k.public, Generation: k.rebinds}
	return func() {
		if err := ss.Bound(m); err != nil {
			c.log.Debug("carrier bound not sent", "flow", f, "err", err)
		}
	}
}
