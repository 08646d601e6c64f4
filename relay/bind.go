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
	errToken     = errors.New("bind-bad-token")     // a wrong TCP ISN, or a proof with the wrong secret: another host, or a stale packet
	errBound     = errors.New("bind-already-bound") // bound to another CGNAT port: a rebinding (the edge is asked to prove it) or another host
	errRebind    = errors.New("rebind-bad-token")   // a proof from another port with the wrong secret
	errEarly     = errors.New("early")              // no carrier yet, but its FlowOpen may be on the way: held (early.go)
	errHeld      = errors.New("bind-held")          // a UDP carrier's packet before its proof: held (early.go)
	errNoProof   = errors.New("bind-no-proof")      // a UDP carrier's packet before its proof that could not be held
	errLimited   = errors.New("bind-limited")       // a TCP bind from an address that spent its failure budget (bindlimit.go)
	errProto     = errors.New("bind-unsupported")   // a carrier protocol nothing binds (ICMP echo: see SPEC)
)

// movedEvery bounds how often the edge is asked to prove one carrier
// (CarrierMoved): a rebinding needs one answer, and a host spraying the
// relay's ports from the edge's CGNAT address must not turn into a flood
// of control messages.
const movedEvery = time.Second

// bound is a carrier that a packet bound (or found bound).
type bound struct {
	flow    session.Flow
	carrier session.Carrier
	inbound bool // the carrier was opened by an offer: its held packets go now
	// hs: the carrier is in its TCP handshake, the packet one of its
	// segments; no entries are in yet.
	hs *tcpHandshake
	// proof: the packet was the edge's proof (a token keepalive, an
	// inbound flow's opener): it goes no further.
	proof bool
	// held: the carrier's packets that came before its proof, from the
	// port it was bound to; they go on now.
	held []earlyPkt
}

// carrierPacket binds the carrier of a packet the datapath missed and
// sends the packet on through it; whole says frame is the entire packet
// (else only its start was handed over, and the sender resends).
func (c *agent) carrierPacket(key xlat.Key, frame []byte, whole bool) {
	keep := frame
	if !whole {
		keep = nil
	}
	b, err := c.bind(key, frame[min(len(frame), 14+20):], keep)
	if err != nil {
		if err != errEarly && err != errHeld {
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
		c.release(c.dp, b.flow, b.carrier) // the remote's packets held for the offer
	}
	if b.proof {
		for _, p := range b.held {
			c.carrierPacket(p.key, p.frame, true) // bound now: they go on
		}
		return // the proof itself stops here: its secret never leaves the relay
	}
	switch {
	case !whole: // only part was handed over: the sender resends
	case ttlExpired(frame, c.dp.Cfg.CarrierAddr):
		c.timeExceeded(c.dp, frame) // the datapath's ttl-to-agent, or a first packet
	default:
		c.dp.send(b.flow, b.carrier, [][]byte{frame}, c.m)
	}
}

// bind binds key's carrier with the packet's L4 bytes; frame, if not nil,
// is the whole packet, which may be held for a FlowOpen still on its way
// or for the carrier's proof.
func (c *agent) bind(key xlat.Key, l4, frame []byte) (bound, error) {
	b, tell, err := c.bindLocked(key, l4, frame)
	if tell != nil {
		tell()
	}
	return b, err
}

// proofOf reads the secret of a proof (a token keepalive) from a UDP
// carrier packet's L4 bytes.
func proofOf(key xlat.Key, l4 []byte) (proto.BindToken, bool) {
	if session.Proto(key.Proto) != session.UDP {
		return 0, false
	}
	t, ok := xlat.KeepaliveToken(l4)
	return proto.BindToken(t), ok
}

// bindLocked binds, re-binds or refuses; tell, if not nil, sends what the
// edge must hear of it, once c.flows.mu is released.
//
// A carrier binds only to what the edge announced on the control
// channel and nobody else behind its CGNAT address can know: a TCP
// carrier to a segment whose sequence number is the token (the SYN's
// ISN); a UDP carrier to a proof carrying the token, a secret the edge
// drew. A UDP carrier's other packets that come before the proof are
// held, and go on once the proof binds the carrier from the same port.
func (c *agent) bindLocked(key xlat.Key, l4, frame []byte) (_ bound, tell func(), _ error) {
	c.flows.mu.Lock()
	defer c.flows.mu.Unlock()
	lk := leaseKey{ports.Key{Relay: key.Dst, Public: key.Src, Proto: session.Proto(key.Proto)}, key.DPort}
	f, ok := c.flows.byLease[lk]
	if !ok {
		if c.early.holdEarly(lk, key, frame, c.sessions.picks(lk.Public), c.now()) {
			return bound{}, nil, errEarly
		}
		c.m.Inc(mBindNoCarrier)
		return bound{}, nil, errNoCarrier
	}
	k := c.flows.get(f)
	public := netip.AddrPortFrom(key.Src, key.SPort)
	secret, isProof := proofOf(key, l4)
	switch {
	case k.public == public:
		// A packet that raced the entries in, the handshake's next, or
		// a proof sent before the edge heard of the binding.
		return bound{flow: f, carrier: k.carrier(), inbound: k.inbound, hs: k.hs, proof: isProof}, nil, nil
	case k.public.IsValid() && k.public.Addr() == public.Addr() && k.lease.Proto == session.UDP && k.hs == nil:
		return c.rebindLocked(f, k, public, secret, isProof)
	case k.public.IsValid():
		c.m.Inc(mBindAlreadyBound)
		return bound{}, nil, errBound
	}
	now := c.now()
	switch k.lease.Proto {
	case session.TCP:
		if !c.bindBudget.allowed(key.Src, now) {
			c.m.Inc(mBindLimited)
			return bound{}, nil, errLimited
		}
		if t, ok := session.TCPToken(l4); !ok || proto.BindToken(t) != k.token {
			c.bindBudget.spend(key.Src, now)
			c.m.Inc(mBindBadToken)
			return bound{}, nil, errToken
		}
	case session.UDP:
		if !isProof {
			if c.early.hold(lk, key, frame, mBindHeld, c.now()) {
				return bound{}, nil, errHeld
			}
			c.m.Inc(mBindNoProof)
			return bound{}, nil, errNoProof
		}
		if secret != k.token {
			c.bindBudget.spend(key.Src, now)
			c.m.Inc(mBindBadToken)
			return bound{}, nil, errToken
		}
	default:
		c.m.Inc(mBindUnsupported)
		return bound{}, nil, errProto
	}
	k.public = public
	if k.hs != nil {
		// The carrier SYN: entries and CarrierBound wait for the
		// edge's completing ACK (handshake.go).
		c.syncLocked(f, k)
		c.m.Inc(mBound)
		return bound{flow: f, carrier: k.carrier(), inbound: k.inbound, hs: k.hs}, nil, nil
	}
	if !c.mapCarrier(f, k) {
		k.public = netip.AddrPort{}
		c.syncLocked(f, k)
		return bound{}, nil, errors.New("datapath refused the entries")
	}
	c.m.Inc(mBound)
	return bound{flow: f, carrier: k.carrier(), inbound: k.inbound, proof: isProof, held: c.heldFromLocked(lk, public)},
		c.tellBound(f, k), nil
}

// heldFromLocked takes the packets held for a carrier before its proof:
// those from the port the proof bound it to go on; any other port's are
// another host's (or stale), and are dropped. c.flows.mu held.
func (c *agent) heldFromLocked(lk leaseKey, public netip.AddrPort) []earlyPkt {
	ps := c.early.take(lk, c.now())
	out := ps[:0]
	for _, p := range ps {
		if p.key.SPort == public.Port() {
			out = append(out, p)
		} else {
			c.m.Inc(mBindHeldOtherPort)
		}
	}
	return out
}

// rebindLocked handles a packet of a bound UDP carrier that arrives from
// another port of the CGNAT address it is bound to: the CGNAT moved the
// carrier (its mapping expired or was flushed), or another host behind
// the same address wants it. Only the edge can tell: an ordinary packet
// is refused and the edge asked (CarrierMoved) to prove the carrier; a
// proof with the carrier's secret re-binds it to the port it came from.
// The rogue's packets never carry the secret, and the edge's answer to a
// rogue's packet leaves from the carrier's real port, where the bound
// entry consumes it.
func (c *agent) rebindLocked(f session.Flow, k *carrier, public netip.AddrPort, secret proto.BindToken, isProof bool) (bound, func(), error) {
	if !isProof {
		c.m.Inc(mBindAlreadyBound)
		ss := c.sessions.session(k.site)
		if ss == nil || c.now().Sub(k.movedAsked) < movedEvery {
			c.m.Inc(mMovedNotAsked) // no session, or asked a moment ago
			return bound{}, nil, errBound
		}
		k.movedAsked = c.now()
		c.m.Inc(mMovedAsked)
		return bound{}, func() {
			if err := ss.Moved(&proto.CarrierMoved{Flow: f, Public: public}); err != nil {
				c.log.Debug("carrier moved not sent", "flow", f, "err", err)
			}
		}, errBound
	}
	if secret != k.token {
		c.bindBudget.spend(public.Addr(), c.now())
		c.m.Inc(mRebindBadToken)
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
	c.m.Inc(mRebound)
	c.log.Info("carrier re-bound", "flow", f, "from", old.Public, "to", public, "generation", k.rebinds)
	return bound{flow: f, carrier: k.carrier(), proof: true}, c.tellBound(f, k), nil
}

// tellBound is the CarrierBound for k's binding, to be sent without c.flows.mu.
func (c *agent) tellBound(f session.Flow, k *carrier) func() {
	ss := c.sessions.session(k.site)
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
