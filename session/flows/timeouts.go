package flows

import (
	"fmt"
	"time"

	"github.com/unmap-dev/unmap/session"
)

// Timeouts are idle times after which a flow expires. The fields match
// config.Timers, so a parsed config converts with Timeouts(t). A
// zero field means its default.
type Timeouts struct {
	UDP            time.Duration // UDP and every protocol on a UDP carrier
	TCPEstablished time.Duration
	TCPTransitory  time.Duration // TCP before the handshake completes and after FIN or RST
	ICMP           time.Duration // ICMP and ICMPv6 echo
}

// Defaults and the RFC minimums they may not go below.
const (
	DefaultUDP     = 5 * time.Minute
	MinUDP         = 2 * time.Minute // RFC 4787 REQ-5
	MinTCPEst      = 124 * time.Minute
	MinTCPTransit  = 4 * time.Minute // RFC 5382 REQ-5, RFC 7857 §3.1
	MinICMP        = time.Minute     // RFC 5508 REQ-2
	maxTimeout     = 30 * 24 * time.Hour
	defaultTCPEst  = MinTCPEst
	defaultTransit = MinTCPTransit
	defaultICMP    = MinICMP
)

// WithDefaults fills zero fields with their defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.UDP == 0 {
		t.UDP = DefaultUDP
	}
	if t.TCPEstablished == 0 {
		t.TCPEstablished = defaultTCPEst
	}
	if t.TCPTransitory == 0 {
		t.TCPTransitory = defaultTransit
	}
	if t.ICMP == 0 {
		t.ICMP = defaultICMP
	}
	return t
}

// Check refuses a timeout below its RFC minimum or above 30 days (a
// typo, and a flow table that never forgets). Zero fields are accepted:
// they mean the default.
func (t Timeouts) Check() error {
	for _, f := range []struct {
		name     string
		v, least time.Duration
	}{
		{"udp", t.UDP, MinUDP},
		{"tcp_established", t.TCPEstablished, MinTCPEst},
		{"tcp_transitory", t.TCPTransitory, MinTCPTransit},
		{"icmp", t.ICMP, MinICMP},
	} {
		if f.v == 0 {
			continue
		}
		if f.v < f.least {
			return fmt.Errorf("timeout %s %v is below the RFC minimum %v", f.name, f.v, f.least)
		}
		if f.v > maxTimeout {
			return fmt.Errorf("timeout %s %v is above %v", f.name, f.v, maxTimeout)
		}
	}
	return nil
}

// For is the idle timeout of a flow of proto in state s (t must have its
// defaults filled in).
func (t Timeouts) For(proto session.Proto, s State) time.Duration {
	var d time.Duration
	switch proto {
	case session.TCP:
		d = t.TCPEstablished
		if s != StateOpen {
			d = t.TCPTransitory
		}
	case session.ICMP, session.ICMPv6:
		d = t.ICMP
	default:
		d = t.UDP
	}
	// A flow the relay has not confirmed gets no longer than a
	// transitory TCP flow: the control channel retries well within it.
	if s == StateOpening {
		d = min(d, t.TCPTransitory)
	}
	return d
}

// State is where a flow is in its life, as far as its timeout cares.
type State uint8

const (
	// StateOpening: announced to the relay, not yet confirmed.
	StateOpening State = iota
	// StateOpen: confirmed and, for TCP, established.
	StateOpen
	// StateTransitory: TCP before the handshake completes or after a
	// FIN or RST was seen.
	StateTransitory
	numStates
)

func (s State) String() string {
	switch s {
	case StateOpening:
		return "opening"
	case StateOpen:
		return "open"
	case StateTransitory:
		return "transitory"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}
