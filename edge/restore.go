package edge

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
	"github.com/unmap-dev/unmap/session/xlat"
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
	ms, err := dp.d.Mappings()
	if err != nil {
		return 0, err
	}
	entries := make(map[xlat.Key]xlat.Entry, len(ms))
	for _, m := range ms {
		entries[m.Key] = m.Entry
	}
	kept := map[xlat.Key]bool{}
	n := 0
	for _, m := range ms {
		if !a.carrierSide(m.Entry.Src, m.Entry.SPort) {
			continue // a carrier's return entry, or not ours: judged below
		}
		if back, ok := a.restoreOne(dp, m, entries); ok {
			kept[m.Key], kept[back] = true, true
			n++
		}
	}
	for _, m := range ms {
		if !kept[m.Key] {
			_ = dp.d.Delete(m.Key)
			dp.notes.delete(m.Key)
			a.m.Inc(mRestoreStaleEntry)
		}
	}
	a.mu.Lock()
	a.m.Add(mRestored, uint64(n))
	a.mu.Unlock()
	return n, nil
}

// carrierSide reports whether an endpoint is one of this edge's carrier
// sources: the WAN address and a port of the carrier range.
func (a *agent) carrierSide(addr netip.Addr, port uint16) bool {
	r := a.ports.Range()
	return addr == a.wan && r.Contains(port)
}

// restoreOne puts back the flow whose LAN-side mapping is m, if its
// carrier's entry (back) is there too and it can be announced.
func (a *agent) restoreOne(dp *datapath, m xdp.Mapping, entries map[xlat.Key]xlat.Entry) (back xlat.Key, ok bool) {
	lan := session.Flow{Proto: session.Proto(m.Key.Proto),
		Site: netip.AddrPortFrom(m.Key.Src, m.Key.SPort), Remote: netip.AddrPortFrom(m.Key.Dst, m.Key.DPort)}
	cp := session.Proto(m.Entry.Proto)
	if m.Entry.Action == xlat.ActWrap64 {
		cp = session.UDP // a wrap always emits UDP; its entry leaves the proto out
	}
	c := session.Carrier{Proto: cp,
		Edge: netip.AddrPortFrom(m.Entry.Src, m.Entry.SPort), Relay: netip.AddrPortFrom(m.Entry.Dst, m.Entry.DPort)}
	out, b, err := xdp.EdgePair(lan, c)
	if got, ok := entries[b.Key]; err != nil || out != m || !ok || got != b.Entry {
		a.m.Inc(mRestoreHalfPair)
		return back, false
	}
	notes, noted := dp.notes.get(m.Key)
	f := lan
	if lan.Site.Addr().Is4() {
		// The relay knows this flow by the site's public endpoint, which
		// only the notes hold.
		if !noted || !notes.Site.IsValid() {
			a.m.Inc(mRestoreNoNotes)
			return back, false
		}
		f.Site = notes.Site
	} else if !noted {
		// The relay has the token already; a relay that restarted too
		// binds the carrier again only if the CGNAT kept its port.
		a.m.Inc(mRestoreNoNotes)
	}
	c.Public = notes.Public
	if err := a.ports.Claim(cp, c.Edge.Port()); err != nil {
		a.m.Inc(mRestorePortTaken)
		return back, false
	}
	if err := a.flows.Add(f, c, flows.StateOpen); err != nil {
		a.releasePort(c)
		a.m.Inc(mRestoreRefused)
		return back, false
	}
	a.mu.Lock()
	a.tokens[f] = notes.Token
	a.mu.Unlock()
	if f != lan {
		a.nat.restore(f, lan.Site, notes.Forward)
	}
	return b.Key, true
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
	a.mu.Lock()
	v := flowNotes{Token: a.tokens[f], Public: c.Public}
	a.mu.Unlock()
	if f.Site.Addr().Is4() {
		v.Site, v.Forward = f.Site, a.nat.isForward(f)
	}
	if err := a.dp.notes.put(out.Key, v); err != nil {
		a.m.Inc(mNotesFailed)
	}
}
