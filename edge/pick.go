package edge

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/flows"
)

// With edge-chooses-r the edge picks a new flow's relay port R itself and
// sends the first packets at once, beside the FlowOpen: no round trip on
// the control channel before the flow's first packet leaves. The relay
// holds a carrier packet that beats the FlowOpen and grants the very R
// picked, or refuses it as taken (another site behind the same CGNAT
// address may use it); the edge then lets the relay choose, as without
// the capability. The edge keeps every R its flows use in a pool per
// protocol, so it never picks one of its own twice.

// setRelayPorts makes the pools of R from a grant (relayPorts.setup)
// and claims the R of the flows a restarted agent restored, which hold
// theirs already; the table is read after the pools are in, so a flow
// that opens meanwhile is claimed by one or the other.
func (a *agent) setRelayPorts(w *proto.Welcome) {
	made := a.rports.setup(w, func(cr proto.CarrierRange, err error) {
		a.log.Warn("relay carrier range", "proto", cr.Proto, "ports", cr.Ports, "err", err)
	})
	if made {
		a.rports.claimAll(a.flows.Snapshot())
	}
}

// claimRelayPort records an R the relay chose, so the edge does not pick
// it for another flow.
func (a *agent) claimRelayPort(c session.Carrier) {
	if err := a.rports.claim(c); err != nil {
		a.log.Debug("relay port not recorded", "carrier", c, "err", err)
	}
}

// pick maps a new outbound flow on a carrier whose R the edge chose,
// when the session grants that; ok is false otherwise (or when no R is
// free), and the relay then chooses.
func (a *agent) pick(f session.Flow, cp session.Proto, token proto.BindToken) (session.Carrier, bool) {
	g, up := a.Grant()
	if !up || !g.Capabilities.Has(proto.CapEdgeChoosesR) {
		return session.Carrier{}, false
	}
	pool, raddr := a.rports.pool(cp)
	if pool == nil {
		return session.Carrier{}, false
	}
	r, err := pool.Grant(cp)
	if err != nil {
		a.m.Inc(mPickNoPort)
		return session.Carrier{}, false
	}
	c, err := a.take(f, cp, netip.AddrPortFrom(raddr, r), token)
	if err != nil {
		_ = pool.Release(cp, r)
		return session.Carrier{}, false
	}
	return c, true
}

// confirm sends the FlowOpen of a picked carrier and waits for the grant.
func (a *agent) confirm(ctx context.Context, f session.Flow, c session.Carrier, token proto.BindToken) error {
	_, err := a.ctl.Open(ctx, &proto.FlowOpen{
		Flow:         f,
		CarrierProto: c.Proto,
		EdgePort:     c.Edge.Port(),
		Relay:        c.Relay,
		LifetimeSec:  uint32(a.flows.Timeouts().For(f.Proto, flows.StateOpen) / time.Second),
		Token:        token,
	})
	if err != nil {
		return err
	}
	return a.markOpen(f, &c)
}

// openPicked installs a picked carrier, sends the held packets on at
// once and confirms with the relay. If the relay refuses the R as taken,
// the flow opens again with an R of the relay's choosing and the packets
// go once more (on the first carrier they were dropped at the relay).
func (a *agent) openPicked(ctx context.Context, dp *datapath, lan, f session.Flow, c session.Carrier, token proto.BindToken, held func() [][]byte, start time.Time) error {
	if err := dp.mapFlow(lan, c); err != nil {
		for range held() {
			a.m.Inc(mHeldDropped)
		}
		a.drop(f, c)
		return err
	}
	a.openLatency.Observe(f.Proto.String(), time.Since(start))
	a.note(f, c)
	pkts := held()
	a.proveFirst(f, c, token)
	a.sendHeld(dp, lan, c, pkts)
	err := a.confirm(ctx, f, c, token)
	if err == nil {
		a.m.Inc(mPicked)
		return nil
	}
	var refused proto.Code
	if !errors.As(err, &refused) && ctx.Err() == nil {
		// No answer: the control channel went down with the FlowOpen or
		// its grant on the way. The flow may already run (its packets
		// went at once), so it stays; the replay after the reconnect
		// settles it with the relay, which takes it or closes it.
		if a.markOpen(f, &c) == nil {
			a.m.Inc(mPickUnconfirmed)
			return nil
		}
	}
	a.forget(f, c)
	if !errors.Is(err, proto.CodeFlowExists) {
		a.nat.release(f)
		return err
	}
	a.m.Inc(mPickTaken)
	c, err = a.Open(ctx, f, c.Proto, token)
	if err != nil {
		a.nat.release(f)
		return err
	}
	if err := dp.mapFlow(lan, c); err != nil {
		a.Close(f, proto.CodeInternal)
		return err
	}
	a.note(f, c)
	a.proveFirst(f, c, token)
	a.sendHeld(dp, lan, c, pkts)
	return nil
}
