package edge

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// restore rebuilds the flow table from the flows the last agent left in
// the pinned datapath, which went on forwarding them while no agent ran.
// Each flow is a pair of entries, the LAN side's and the carrier's; with
// the notes kept beside them (token, public side, announced endpoint) a
// flow is what the agent had, and the control client replays it to the
// relay on the next session like any other. Entries that make no flow
// this agent can own (another WAN address or port range, a half of a
// pair, a flow with no notes to announce it by) are removed and counted.
func (a *agent) restore(dp *datapath) (int, error) {
	ms, err := dp.XDP.Mappings()
	if err != nil {
		return 0, err
	}
	// A flow's LAN-side entry sends from one of this edge's carrier
	// sources; the others are a carrier's return entry, or not ours.
	pinned, rest := slowpath.ReadPinned(ms, slowpath.EdgePairing, func(m xdp.Mapping) bool { return a.carrierSide(m.Entry.Src, m.Entry.SPort) })
	for _, m := range rest {
		if a.carrierSide(m.Entry.Src, m.Entry.SPort) {
			a.m.Inc(mRestoreHalfPair)
		}
	}
	kept := map[xlat.Key]bool{}
	n := 0
	for _, p := range pinned {
		if a.restoreOne(dp, p) {
			kept[p.Out.Key], kept[p.Back.Key] = true, true
			n++
		}
	}
	for _, m := range ms {
		if !kept[m.Key] {
			_ = dp.XDP.Delete(m.Key)
			dp.notes.delete(m.Key)
			a.m.Inc(mRestoreStaleEntry)
		}
	}
	a.m.Add(mRestored, uint64(n))
	return n, nil
}

// carrierSide reports whether an endpoint is one of this edge's carrier
// sources: the WAN address and a port of the carrier range.
func (a *agent) carrierSide(addr netip.Addr, port uint16) bool {
	r := a.ports.Range()
	return addr == a.wan && r.Contains(port)
}

// restoreOne puts back the flow of a pair of pinned entries, if it can
// be announced.
func (a *agent) restoreOne(dp *datapath, p slowpath.Pinned) bool {
	lan, c := p.Flow, p.Carrier
	notes, noted := dp.notes.get(p.Out.Key)
	f := lan
	if lan.Site.Addr().Is4() {
		// The relay knows this flow by the site's public endpoint, which
		// only the notes hold.
		if !noted || !notes.Site.IsValid() {
			a.m.Inc(mRestoreNoNotes)
			return false
		}
		f.Site = notes.Site
	} else if !noted {
		// The relay has the token already; a relay that restarted too
		// binds the carrier again only if the CGNAT kept its port.
		a.m.Inc(mRestoreNoNotes)
	}
	c.Public = notes.Public
	if err := a.ports.Claim(c.Proto, c.Edge.Port()); err != nil {
		a.m.Inc(mRestorePortTaken)
		return false
	}
	if err := a.flows.Add(f, c, flows.StateOpen); err != nil {
		a.releasePort(c)
		a.m.Inc(mRestoreRefused)
		return false
	}
	a.binds.set(f, notes.Token)
	if f != lan {
		a.nat.restore(f, lan.Site, notes.Forward)
	}
	return true
}

// note records what a restarted agent needs to take f back (see
// flowNotes); called whenever f's entries are installed or its carrier
// is bound.
func (a *agent) note(f session.Flow, c session.Carrier) {
	if a.dp == nil || a.dp.notes == nil {
		return
	}
	out, _, err := a.edgePair(f, c)
	if err != nil {
		return
	}
	v := flowNotes{Token: a.binds.get(f), Public: c.Public}
	if f.Site.Addr().Is4() {
		v.Site, v.Forward = f.Site, a.nat.isForward(f)
	}
	if err := a.dp.notes.put(out.Key, v); err != nil {
		a.m.Inc(mNotesFailed)
	}
}
