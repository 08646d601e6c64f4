package relay

import (
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
)

// tcpHandshake is the relay's side of an inbound TCP flow's carrier
// handshake (session/handshake). The carrier binds on the edge's carrier
// SYN (its ISN is the bind token); the relay answers the CGNAT with a
// SYN/ACK of the remote's and sends the host's SYN/ACK to the remote; the
// edge's completing ACK puts the entries in and releases what the remote
// sent meanwhile. Until then no entry exists at the relay, so none can
// translate a handshake segment: each comes to the agent as a miss.
type tcpHandshake struct {
	syn        handshake.Segment // the remote's SYN, as offered
	carrierSYN handshake.Segment // the carrier SYN as it arrived (C to R), once seen
	seen       bool
	toRemote   []byte    // the host's SYN/ACK to the remote, once built
	answered   time.Time // when the SYN/ACKs last went out
}

// synAckEvery is how soon the relay answers a carrier SYN again. The edge
// sends its SYN a few times before the relay's SYN/ACK can be back; were
// each answered, a SYN/ACK could reach the edge after its carrier-to-host
// entry is in and go on to the host. Answering at most this often (a TCP
// stack's own SYN/ACK timer is 1 s) keeps the answers to lost ones.
const synAckEvery = 500 * time.Millisecond

// handshakeStep handles a segment on a carrier in its handshake; b is
// what bind found, frame the missed packet. Every segment stops here.
func (c *agent) handshakeStep(dp *datapath, b bound, frame []byte) {
	if carrier, done := c.handshakeSegment(b, frame, dp.Inj.Packet); done {
		c.release(dp, b.flow, carrier)
	}
}

// handshakeSegment is handshakeStep's decision, sending with send; done
// says the handshake completed (the entries are in) and the flow's held
// packets may go through carrier.
func (c *agent) handshakeSegment(b bound, frame []byte, send func([]byte) error) (carrier session.Carrier, done bool) {
	cgn, relay, seg, err := handshake.Frame(frame)
	if err != nil {
		c.m.Inc(mHandshakeUnreadable)
		return carrier, false
	}
	c.flows.mu.Lock()
	k := c.flows.get(b.flow)
	if k == nil || k.hs != b.hs {
		c.m.Inc(mHandshakeStale) // completed or given up meanwhile
		c.flows.mu.Unlock()
		return carrier, false
	}
	hs := k.hs
	switch {
	case handshake.IsCarrierSYN(seg, uint32(k.token)):
		if hs.seen && time.Since(hs.answered) < synAckEvery {
			c.m.Inc(mHandshakeCarrierSynEarly) // our SYN/ACK may be on its way
			c.flows.mu.Unlock()
			return carrier, false
		}
		if hs.seen {
			c.m.Inc(mHandshakeCarrierSynAgain) // our SYN/ACK was lost: send it again
		}
		hs.answered = time.Now()
		toCGN, toRemote, err := synAcks(b.flow, hs.syn, seg, relay, cgn)
		if err != nil {
			c.m.Inc(mHandshakeBuildFailed)
			c.flows.mu.Unlock()
			return carrier, false
		}
		hs.carrierSYN, hs.seen, hs.toRemote = seg, true, toRemote
		c.flows.mu.Unlock()
		c.sendSynAcks(send, b.flow, toCGN, toRemote)
		return carrier, false
	case hs.seen && handshake.IsCompletingACK(seg, hs.syn, hs.carrierSYN):
		k.hs, k.synAck = nil, hs.toRemote
		// The carrier-to-remote entry now; the other one too if a
		// segment of the remote's that acknowledges the host's SYN/ACK
		// is held already.
		mapped := c.mapHalf(b.flow, k, true)
		if mapped && c.inb.heldAny(b.flow, func(p []byte) bool { return acksHost(k, p) }) {
			k.backIn = c.mapHalf(b.flow, k, false)
			c.syncLocked(b.flow, k) // established: its timeout no longer the transitory one
		}
		ss := c.sessions.session(k.site)
		carrier = k.carrier()
		c.m.Inc(mHandshakeCompleted)
		c.flows.mu.Unlock()
		if !mapped {
			return carrier, false // the offer's deadline removes the flow
		}
		if ss != nil {
			if err := ss.Bound(&proto.CarrierBound{Flow: b.flow, Public: carrier.Public}); err != nil {
				c.log.Debug("carrier bound not sent", "flow", b.flow, "err", err)
			}
		}
		return carrier, true
	default:
		c.m.Inc(mHandshakeUnexpected)
		c.flows.mu.Unlock()
		return carrier, false
	}
}

// maxAckAhead bounds how far past the host's ISN+1 the remote's first
// segment may acknowledge: its handshake ACK acknowledges exactly ISN+1;
// if that was lost, the next acknowledges what the host sent since,
// which cannot be more than the host's initial window (RFC 6928: 10
// segments). A host that never saw the host's SYN/ACK (a spoofed SYN's
// source) guesses right once in 2^32/maxAckAhead tries.
const maxAckAhead = 1 << 16

// acksSeg reports whether seg, the remote's first segment after the
// carrier handshake, acknowledges the host's SYN/ACK, whose ISN is the
// carrier's bind token: the remote saw it, so its address is real.
func acksSeg(k *carrier, seg handshake.Segment) bool {
	isn := uint32(k.token)
	return seg.Flags&handshake.ACK != 0 && seg.Flags&(handshake.SYN|handshake.RST) == 0 && seg.Ack-(isn+1) < maxAckAhead
}

// acksHost is acksSeg for a frame held during the handshake.
func acksHost(k *carrier, frame []byte) bool {
	_, _, seg, err := handshake.Frame(frame)
	return err == nil && acksSeg(k, seg)
}

// synAcks are the two answers to a carrier SYN: the relay's SYN/ACK to
// the CGNAT (from relay to cgn, the carrier's addresses as they arrived)
// and the host's SYN/ACK to the remote.
func synAcks(f session.Flow, syn, carrierSYN handshake.Segment, relay, cgn netip.Addr) (toCGN, toRemote []byte, err error) {
	if toCGN, err = handshake.Packet(relay, cgn, handshake.RelaySynAck(syn, carrierSYN)); err != nil {
		return nil, nil, err
	}
	toRemote, err = handshake.Packet(f.Site.Addr(), f.Remote.Addr(), handshake.HostSynAck(syn, carrierSYN))
	return toCGN, toRemote, err
}

// sendSynAcks sends the CGNAT's SYN/ACK, then the remote's. The remote's
// answer misses (no entries yet) and is held until the edge's completing
// ACK, so it cannot reach the edge before the edge's entries are in.
func (c *agent) sendSynAcks(send func([]byte) error, f session.Flow, toCGN, toRemote []byte) {
	for _, p := range [][]byte{toCGN, toRemote} {
		if err := send(p); err != nil {
			c.m.Inc(mHandshakeSendFailed)
			c.log.Debug("handshake segment not sent", "flow", f, "err", err)
			return
		}
	}
	c.m.Inc(mHandshakeSynackSent)
}

// mapHalf installs one of an inbound TCP flow's entries (see
// datapath.mapHalf), in place of pinned entries that hold its key; c.flows.mu
// must be held.
func (c *agent) mapHalf(f session.Flow, k *carrier, toRemote bool) bool {
	if c.dp == nil {
		return true
	}
	c.pinned.replaceOf(f, k, toRemote, !toRemote)
	if err := c.dp.mapHalf(f, k.carrier(), toRemote); err != nil {
		c.mapFailedLocked(f, err)
		return false
	}
	return true
}

// afterHandshake handles a segment of the remote's that missed after the
// handshake (c.flows.mu held, unlocked on return): a SYN again is answered with
// the host's SYN/ACK again (the first was lost); any other segment puts
// the remote-to-carrier entry in and goes on through the carrier.
func (c *agent) afterHandshake(f session.Flow, k *carrier, seg handshake.Segment, frame []byte) {
	if seg.Flags&handshake.SYN != 0 {
		pkt := k.synAck
		c.m.Inc(mInboundTCPSynAnswered)
		c.flows.mu.Unlock()
		if pkt != nil && c.dp != nil {
			if err := c.dp.Inj.Packet(pkt); err != nil {
				c.m.Inc(mHandshakeSendFailed)
			}
		}
		return
	}
	if !k.backIn {
		if !acksSeg(k, seg) {
			// Not (yet) the remote's ACK of the host's SYN/ACK: a blind
			// or spoofed segment, or a RST. It goes on to the host, which
			// judges it, but the remote-to-carrier entry waits, so the
			// next segment comes here too, and the flow stays half-open
			// (transitory timeout, inboundquota.go).
			c.m.Inc(mInboundTCPAckUnproven)
			carrier := k.carrier()
			c.flows.mu.Unlock()
			if c.dp != nil {
				c.dp.send(f, carrier, [][]byte{frame}, c.m)
			}
			return
		}
		k.backIn = c.mapHalf(f, k, false)
		c.syncLocked(f, k) // established: its timeout no longer the transitory one
		c.m.Inc(mInboundTCPAcked)
	}
	carrier := k.carrier()
	c.flows.mu.Unlock()
	if c.dp != nil {
		c.dp.send(f, carrier, [][]byte{frame}, c.m)
	}
}
