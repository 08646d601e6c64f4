package edge

import (
	"net/netip"
	"sync"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
)

// tcpInbound is the edge's side of an inbound TCP flow's carrier
// handshake (session/handshake): the remote's SYN goes to the LAN host,
// the host's SYN/ACK becomes the carrier SYN (its ISN is the bind token),
// and the relay's SYN/ACK, from the CGNAT, is answered with the ACK that
// completes the CGNAT's view. Until the relay's SYN/ACK no entry exists,
// so the host's SYN/ACK and the relay's SYN/ACK both come to the agent as
// misses and neither is translated. Then only the carrier-to-host entry
// goes in; the host-to-carrier entry waits for the host's first segment
// without SYN, so a SYN/ACK the host sends again is never translated onto
// the carrier as a SYN/ACK (the CGNAT would take it for an invalid
// packet): it is dropped and counted.
type tcpInbound struct {
	flow     session.Flow
	carrier  session.Carrier   // E and R
	syn      handshake.Segment // the remote's SYN, from the offer
	answered chan struct{}     // closed at the host's first SYN/ACK or RST

	// The rest is guarded by tcpHandshakes.mu.
	hostSA     handshake.Segment // the host's SYN/ACK, once answered
	reset      bool              // the host answered with a RST
	carrierSYN []byte            // the carrier SYN, once built
	ack        []byte            // the completing ACK, once the relay answered
	done       bool              // the relay answered: the carrier-to-host entry is in
	outIn      bool              // the host-to-carrier entry is in too
}

// tcpHandshakes are the inbound TCP flows in their carrier handshake,
// by flow (the LAN host's segments) and by carrier port E (the relay's),
// and how many offers wait for their LAN host's answer. Its lock guards
// those and each handshake's state; it builds the handshake's segments
// under it, but sends them, installs entries and counts outside it.
type tcpHandshakes struct {
	mu         sync.Mutex
	byFlow     map[session.Flow]*tcpInbound
	byEdgePort map[uint16]*tcpInbound
	hostWaits  int // offers waiting for the LAN host's answer (maxHostWaits)
}

func newTCPHandshakes() *tcpHandshakes {
	return &tcpHandshakes{byFlow: map[session.Flow]*tcpInbound{}, byEdgePort: map[uint16]*tcpInbound{}}
}

// wait counts one more offer waiting for its host; false at maxHostWaits.
func (t *tcpHandshakes) wait() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hostWaits >= maxHostWaits {
		return false
	}
	t.hostWaits++
	return true
}

// unwait ends a wait counted by wait.
func (t *tcpHandshakes) unwait() {
	t.mu.Lock()
	t.hostWaits--
	t.mu.Unlock()
}

func (t *tcpHandshakes) add(h *tcpInbound) {
	t.mu.Lock()
	t.byFlow[h.flow] = h
	t.byEdgePort[h.carrier.Edge.Port()] = h
	t.mu.Unlock()
}

// lookup is f's handshake, nil if f is in none.
func (t *tcpHandshakes) lookup(f session.Flow) *tcpInbound {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byFlow[f]
}

// forget drops f's handshake.
func (t *tcpHandshakes) forget(f session.Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.byFlow[f]; ok {
		delete(t.byFlow, f)
		if t.byEdgePort[h.carrier.Edge.Port()] == h {
			delete(t.byEdgePort, h.carrier.Edge.Port())
		}
	}
}

// answer is how the host answered h's SYN (once h.answered is closed).
func (t *tcpHandshakes) answer(h *tcpInbound) (reset bool, hostSA handshake.Segment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return h.reset, h.hostSA
}

// pendingSYN is h's carrier SYN while h is still waiting for the
// relay's SYN/ACK; stop says it no longer is (answered, or forgotten).
func (t *tcpHandshakes) pendingSYN(h *tcpInbound) (pkt []byte, stop bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return h.carrierSYN, h.done || t.byFlow[h.flow] != h
}

// completingACK is h's completing ACK, once built.
func (t *tcpHandshakes) completingACK(h *tcpInbound) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return h.ack
}

// setOutIn records that h's host-to-carrier entry is in.
func (t *tcpHandshakes) setOutIn(h *tcpInbound) {
	t.mu.Lock()
	h.outIn = true
	t.mu.Unlock()
}

// hostStep is what a segment of the LAN host does to its handshake.
type hostStep uint8

const (
	hostUnexpected  hostStep = iota // none of the below: counted
	hostPass                        // after the handshake: the ordinary path sends it on
	hostMapOut                      // the host's first segment after it: install its entry, then send it on
	hostLate                        // a SYN/ACK after the relay answered: dropped
	hostAnswered                    // its SYN/ACK or RST: the offer's answer
	hostAgain                       // its SYN/ACK again: send the carrier SYN again (pkt)
	hostBuildFailed                 // the carrier SYN could not be built
)

// hostSegment applies a segment of h's LAN host to h.
func (t *tcpHandshakes) hostSegment(h *tcpInbound, seg handshake.Segment) (step hostStep, pkt []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := h.carrierSYN == nil && !h.reset
	switch {
	case h.done && seg.Flags&handshake.SYN == 0:
		if !h.outIn {
			return hostMapOut, nil
		}
		return hostPass, nil
	case h.done:
		return hostLate, nil
	case seg.Flags&handshake.RST != 0 && first:
		h.reset = true
		close(h.answered)
		return hostAnswered, nil
	case handshake.Answers(seg, h.syn) && first:
		pkt, err := handshake.Packet(h.carrier.Edge.Addr(), h.carrier.Relay.Addr(), handshake.CarrierSYN(seg, h.carrier.Edge.Port(), h.carrier.Relay.Port()))
		if err != nil {
			return hostBuildFailed, nil
		}
		h.hostSA, h.carrierSYN = seg, pkt
		close(h.answered)
		return hostAnswered, nil
	case handshake.Answers(seg, h.syn) && seg.Seq == h.hostSA.Seq:
		return hostAgain, h.carrierSYN
	}
	return hostUnexpected, nil
}

// relayStep is what a segment from the relay to a carrier port does.
type relayStep uint8

const (
	relayNone        relayStep = iota // not for a carrier in its handshake
	relayUnexpected                   // for one, but not its SYN/ACK: counted
	relayAgain                        // its SYN/ACK again (our ACK was lost): send the ACK again (pkt)
	relayBuildFailed                  // the completing ACK could not be built
	relayCompleted                    // its SYN/ACK: send the completing ACK (pkt) once the entry is in
)

// relaySegment applies a segment from src to a carrier port to the
// handshake of that port, if any.
func (t *tcpHandshakes) relaySegment(src netip.Addr, seg handshake.Segment) (h *tcpInbound, step relayStep, pkt []byte) {
	t.mu.Lock()
	h = t.byEdgePort[seg.DstPort]
	if h == nil || src != h.carrier.Relay.Addr() || seg.SrcPort != h.carrier.Relay.Port() {
		t.mu.Unlock() // most WAN misses: no handshake of theirs
		return nil, relayNone, nil
	}
	defer t.mu.Unlock()
	switch {
	case h.carrierSYN == nil || !handshake.IsRelaySynAck(seg, h.syn, h.hostSA):
		return h, relayUnexpected, nil
	case h.done:
		return h, relayAgain, h.ack
	}
	ack, err := handshake.Packet(h.carrier.Edge.Addr(), h.carrier.Relay.Addr(),
		handshake.CompletingACK(h.syn, h.hostSA, h.carrier.Edge.Port(), h.carrier.Relay.Port()))
	if err != nil {
		return h, relayBuildFailed, nil
	}
	h.ack, h.done = ack, true
	return h, relayCompleted, ack
}
