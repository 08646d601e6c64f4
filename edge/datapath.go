package edge

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/handshake"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// datapath is the edge's XDP programs on its LAN and WAN, and the slow
// path for the packets they hand over.
type datapath struct {
	*slowpath.Datapath
	notes *notesMap      // what the entries do not say of a flow, pinned beside them
	lan4  []netip.Prefix // the LAN's IPv4 subnets: who may use the site's public IPv4
}

func openDatapath(s *Settings, wan netip.Addr, log *slog.Logger) (*datapath, error) {
	cfg := xlat.Config{CarrierAddr: wan, PortLo: s.CarrierPorts.First, PortHi: s.CarrierPorts.Last}
	sp, err := slowpath.Open(cfg, xdp.Options{PinPath: s.PinPath, Buckets: maxFlows, MaxFlows: maxFlows, MissRate: s.Misses.Rate, MissBurst: s.Misses.Burst}, log)
	if err != nil {
		return nil, err
	}
	dp := &datapath{Datapath: sp}
	if dp.notes, err = openNotes(s.PinPath, maxFlows); err != nil {
		return nil, errors.Join(err, dp.close())
	}
	if err := sp.XDP.AddLocal(wan); err != nil {
		return nil, errors.Join(err, dp.close())
	}
	// The router's LAN addresses are the hosts' gateway, never a flow.
	if dp.lan4, err = ifacePrefixes4(s.LAN); err != nil {
		return nil, errors.Join(err, dp.close())
	}
	for _, p := range dp.lan4 {
		if err := sp.XDP.AddLocal(p.Addr()); err != nil {
			return nil, errors.Join(err, dp.close())
		}
	}
	for _, at := range []struct {
		ifname string
		role   xlat.Role
	}{{s.LAN, xlat.RoleEdgeLAN}, {s.WAN, xlat.RoleEdgeWAN}} {
		ifindex, err := sp.Attach(at.ifname, at.role, s.PinPath)
		if err != nil {
			return nil, errors.Join(err, dp.close())
		}
		// Translated packets leave by the other interface: XDP_REDIRECT
		// needs it in the devmap.
		if err := sp.XDP.AddTXPort(ifindex); err != nil {
			return nil, errors.Join(err, dp.close())
		}
	}
	// Carriers leave the LAN program with the WAN address as their
	// source (slowpath.AcceptLocal).
	if err := slowpath.AcceptLocal(s.LAN); err != nil {
		return nil, errors.Join(err, dp.close())
	}
	return dp, nil
}

func (dp *datapath) close() error {
	var errs []error
	if dp.notes != nil {
		errs = append(errs, dp.notes.close())
	}
	return errors.Join(append(errs, dp.Close())...)
}

// maxFlows bounds the edge's flows (the notes map has one entry a flow;
// the relay's default quota is the same). The flow table gets a bucket
// of four ways a flow, so it is half full at the bound and a key almost
// never spills; the spill hashes get as many entries.
const maxFlows = 65536

// local is the edge's table view for classifying a missed packet: no
// flow entries, only the router's own addresses.
type local struct{ addrs []netip.Addr }

func (l local) Lookup(xlat.Key) (xlat.Entry, bool) { return xlat.Entry{}, false }
func (l local) IsLocal(a netip.Addr) bool {
	for _, x := range l.addrs {
		if x == a {
			return true
		}
	}
	return false
}
func (local) InSite(netip.Addr) bool { return false }

// misses serves the datapath's misses until ctx ends.
func (a *agent) misses(ctx context.Context, dp *datapath) error {
	pending := newOpenings(maxOpening)
	return dp.ServeMisses(ctx, func(m xdp.Miss) { a.miss(ctx, dp, pending, m) })
}

// miss handles one packet the datapath handed over.
func (a *agent) miss(ctx context.Context, dp *datapath, pending *openings, m xdp.Miss) {
	if m.Role != xlat.RoleEdgeLAN {
		if !a.handshakeWAN(m.Data) {
			a.m.Inc(mMissWan) // a carrier packet with no flow: nothing to open
		}
		return
	}
	if isIPv6(m.Data) && m.Data[14+7] <= 1 {
		a.timeExceeded(dp, m.Data[14:]) // the datapath's ttl-to-agent
		return
	}
	lan, f, cp, token, ok := a.classify(dp, m)
	if !ok {
		return
	}
	if a.handshakeLAN(f, m.Data) {
		return // the host's part of an inbound TCP handshake
	}
	if e, open := a.flows.Get(f); open && e.Carrier.Relay.IsValid() {
		// Sent before the flow's entries were in: send it on now.
		if m.Len == len(m.Data) {
			a.sendHeld(dp, lan, e.Carrier, [][]byte{m.Data})
		}
		return
	}
	var pkt []byte
	if m.Len == len(m.Data) {
		pkt = m.Data // else only part was handed over: the sender resends
	}
	first, why := pending.hold(f, pkt)
	if why != "" {
		a.count(why)
		if why == "opening-full" {
			a.nat.release(f) // classify may have bound a public IPv4 port for it
		}
	}
	if !first {
		return
	}
	go func() {
		err := a.openFlow(ctx, dp, lan, f, cp, token, func() [][]byte { return pending.take(f) })
		if err != nil {
			a.log.Info("outbound flow not opened", "flow", f, "err", err)
		}
	}()
}

// classify turns a LAN miss into the flow it opens: lan as the LAN host
// sends it, f as the relay is told of it (they differ for the site's
// public IPv4, whose port the edge maps; see siteNAT).
func (a *agent) classify(dp *datapath, m xdp.Miss) (lan, f session.Flow, cp session.Proto, token proto.BindToken, ok bool) {
	// The datapath has judged it a miss; the model only parses it here
	// (with the IPv4 switch on, whatever it is now: the packet was taken).
	cfg := dp.Cfg
	cfg.LANv4ToAgent = true
	res := xlat.Process(xlat.RoleEdgeLAN, &cfg, local{}, nil, m.Data)
	k := res.Key
	if res.Reason != xlat.ReasonMiss {
		a.m.Inc(mMissUnusable)
		return lan, f, 0, 0, false
	}
	lan = session.Flow{Proto: session.Proto(k.Proto), Site: netip.AddrPortFrom(k.Src, k.SPort), Remote: netip.AddrPortFrom(k.Dst, k.DPort)}
	if k.Src.Is4() {
		return a.classify4(dp, m, lan)
	}
	if g, _ := a.Grant(); g == nil || !g.Prefix.Contains(k.Src) {
		a.log.Debug("miss from outside the site", "key", k, "granted", g != nil)
		a.m.Inc(mMissNotSite)
		return lan, f, 0, 0, false
	}
	if _, known := a.flows.Get(lan); !known && a.lateAnswer(lan, m.Data) {
		return lan, f, 0, 0, false
	}
	// TCP and UDP ride native carriers; everything else, ICMPv6 echo
	// included, rides a UDP carrier. An ICMP echo carrier has a single
	// identifier, which the CGNAT rewrites, so the relay could not find
	// its port R in it; UDP costs 8 bytes and is still 12 below IPv6's
	// header.
	cp = session.UDP
	if lan.Proto == session.TCP {
		cp = session.TCP
	}
	return lan, lan, cp, bindToken(cp, m.Data[min(len(m.Data), 14+40):]), true
}

// classify4 maps a LAN host's IPv4 flow onto the site's public IPv4. It
// rides a native carrier (TCP, UDP or ICMP echo: the datapath only
// passes those to the agent), rewritten at both ends, so the relay finds
// its token where the host put it.
func (a *agent) classify4(dp *datapath, m xdp.Miss, lan session.Flow) (_, f session.Flow, cp session.Proto, token proto.BindToken, ok bool) {
	if !slices.ContainsFunc(dp.lan4, func(p netip.Prefix) bool { return p.Contains(lan.Site.Addr()) }) {
		a.m.Inc(mMissNotSite)
		return lan, f, 0, 0, false
	}
	if f, ok := a.nat.forwarded(lan); ok {
		// The host answers a forwarded flow (its TCP handshake, or a
		// packet that raced the entries in).
		return lan, f, lan.Proto, 0, true
	}
	if a.lateAnswer(lan, m.Data) {
		return lan, f, 0, 0, false
	}
	f, err := a.nat.outbound(lan)
	if err != nil {
		a.m.Inc(mMissNoPublicIPv4)
		a.log.Debug("no public IPv4 port", "flow", lan, "err", err)
		return lan, f, 0, 0, false
	}
	ihl := 20
	if len(m.Data) > 14 {
		ihl = int(m.Data[14]&0xf) * 4
	}
	return lan, f, lan.Proto, bindToken(lan.Proto, m.Data[min(len(m.Data), 14+ihl):]), true
}

// bindToken is what will bind a new outbound flow's carrier of protocol
// cp, l4 the flow's first packet from its L4 header on: a TCP carrier's
// SYN keeps the host's ISN, which the relay reads; any other carrier gets
// a fresh secret, which the edge proves on it (proof.go). Never a value
// taken from the payload: a host behind the same CGNAT address may
// predict that.
func bindToken(cp session.Proto, l4 []byte) proto.BindToken {
	if cp == session.TCP {
		t, _ := session.TCPToken(l4)
		return proto.BindToken(t)
	}
	return proto.BindToken(session.NewSecret())
}

// lateAnswer reports (and counts) a LAN host's TCP SYN/ACK or RST for no
// flow: a late answer to an inbound SYN whose handshake was given up. It
// never opens a flow.
func (a *agent) lateAnswer(lan session.Flow, frame []byte) bool {
	if lan.Proto != session.TCP {
		return false
	}
	_, _, seg, err := handshake.Frame(frame)
	if err != nil || !seg.Is(handshake.SYN|handshake.ACK) && seg.Flags&handshake.RST == 0 {
		return false
	}
	a.m.Inc(mMissTCPAnswerNoFlow)
	return true
}

// openFlow opens the flow with the relay, installs both directions in the
// datapath and sends the held packets on, translated.
func (a *agent) openFlow(ctx context.Context, dp *datapath, lan, f session.Flow, cp session.Proto, token proto.BindToken, held func() [][]byte) error {
	start := time.Now() // the miss was read a moment ago
	if c, ok := a.pick(f, cp, token); ok {
		return a.openPicked(ctx, dp, lan, f, c, token, held, start)
	}
	c, err := a.Open(ctx, f, cp, token)
	if err != nil {
		for range held() {
			a.m.Inc(mHeldDropped)
		}
		a.nat.release(f)
		return err
	}
	err = dp.mapFlow(lan, c)
	pkts := held()
	if err != nil {
		a.Close(f, proto.CodeInternal)
		return err
	}
	a.openLatency.Observe(f.Proto.String(), time.Since(start))
	a.note(f, c)
	a.proveFirst(f, c, token)
	a.sendHeld(dp, lan, c, pkts)
	return nil
}

// sendHeld translates a flow's held packets with the entries just
// installed and sends them on; lan is the flow as the LAN host sent it.
func (a *agent) sendHeld(dp *datapath, lan session.Flow, c session.Carrier, pkts [][]byte) {
	if out, back, err := xdp.EdgePair(lan, c); err == nil {
		dp.SendHeld(xlat.RoleEdgeLAN, out, back, pkts, a.m, heldCounters)
	}
}

// mapFlow installs both directions of a flow on its carrier; lan is the
// flow as the LAN host sees it (agent.edgePair).
func (dp *datapath) mapFlow(lan session.Flow, c session.Carrier) error {
	out, back, err := xdp.EdgePair(lan, c)
	if err != nil {
		return err
	}
	return dp.XDP.PutPair(out, back)
}
