package cgnat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Explicit mappings are the ones a subscriber asked for by PCP or
// NAT-PMP (cgnat.PortMapper): a mapping at a port of the subscriber's
// choosing in its own blocks, marked on its inbound slot (In.Explicit,
// CG_EXPLICIT in xdp/bpf/types.h) so that it admits any remote whatever
// the filtering mode (a PCP MAP is an explicit endpoint-independent
// filter, RFC 6887 §11.3). The agent's sweep leaves explicit mappings
// alone: they end with their lifetime, not when idle.

// ErrPortTaken is MapExplicit's answer for a port another mapping holds,
// or for an internal endpoint already mapped to another port (mapping is
// endpoint-independent: one public port per internal endpoint).
var ErrPortTaken = errors.New("cgnat: public port taken")

// ErrExplicit64 is MapExplicit's and Unexplicit's answer for a NAT64
// subscriber's endpoint (an IPv6 key): explicit mappings are NAT44's
// only. A PCP MAP from an IPv6 host behind a NAT64 (RFC 6887 §9's
// IPv4-mapped external address) is not served; the relay's port mapper
// refuses it before it gets here (cgnat.PortMapper).
var ErrExplicit64 = errors.New("cgnat: no explicit mapping for a NAT64 subscriber")

// MapExplicit makes k's explicit mapping at pub:port, a port of one of
// k.Addr's blocks, as the agent does through the datapath
// (xdp.Datapath.MapExplicit): the port's bit claimed in its block, the
// inbound slot written (marked explicit), then the mapping. If k is
// mapped at pub:port already (an implicit mapping its outbound flows
// made), that mapping is marked explicit.
func (s *State) MapExplicit(c *Config, k Key, pub netip.Addr, port uint16) error {
	if k.Addr.Is6() {
		return ErrExplicit64
	}
	pl := plane(k.Proto)
	off, ok := c.poolPort(pub, port)
	if pl < 0 || pl > 1 || !ok || !c.inside(k.Addr) {
		return fmt.Errorf("cgnat: no explicit mapping %+v at %v:%d", k, pub, port)
	}
	if o, ok := s.Out[k]; ok {
		if o.Addr != pub || o.Port != port {
			return ErrPortTaken
		}
		in := s.In[Slot{pl, off}]
		in.Explicit = true
		s.In[Slot{pl, off}] = in
		return nil
	}
	id, pos := uint32(off>>c.BlockBits), off&(c.BlockSize()-1)
	u, b := s.Subs[k.Addr], s.Blocks[id]
	if u == nil || b == nil || !slices.Contains(u.Blocks, id) {
		return fmt.Errorf("cgnat: %v does not hold block %d (%v:%d)", k.Addr, id, pub, port)
	}
	if b.Bits[pl][pos>>6]&(1<<(pos&63)) != 0 {
		return ErrPortTaken
	}
	b.Bits[pl][pos>>6] |= 1 << (pos & 63)
	b.Used[pl]++
	s.In[Slot{pl, off}] = In{Addr: k.Addr, Port: k.Port, Explicit: true}
	s.Out[k] = Out{Addr: pub, Port: port, Epoch: s.Epoch}
	return nil
}

// Unexplicit turns k's explicit mapping back into an ordinary one: the
// filtering mode applies to it again, and its idle time starts now (its
// epoch is the current one), as if an outbound packet had just used it.
func (s *State) Unexplicit(c *Config, k Key) error {
	if k.Addr.Is6() {
		return ErrExplicit64
	}
	o, ok := s.Out[k]
	if !ok {
		return fmt.Errorf("cgnat: no mapping %+v", k)
	}
	off, ok := c.poolPort(o.Addr, o.Port)
	if !ok {
		return fmt.Errorf("cgnat: mapping %+v outside the pool", k)
	}
	sl := Slot{plane(k.Proto), off}
	in := s.In[sl]
	in.Explicit = false
	s.In[sl] = in
	o.Epoch = s.Epoch
	s.Out[k] = o
	return nil
}
