package edge

import (
	"context"
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// defaultCarrierKeepalive is used when the relay's grant names no
// interval: below the 30 s UDP timeout some CGNATs use.
const defaultCarrierKeepalive = 20 * time.Second

// idleSince is what keepCarriers knows of a carrier's outbound side.
type idleSince struct {
	packets uint64
	since   time.Time
	proved  time.Time // last proof keepCarriers sent while the carrier was unbound
}

// keepCarriers keeps the CGNAT's mappings of idle UDP carriers: a carrier
// that sent nothing outbound for the relay's keepalive interval gets a
// keepalive datagram (xlat.KeepaliveMagic), which the relay's datapath
// consumes. Without it a UDP flow idle longer than the CGNAT's timeout
// would find its carrier gone, or moved to another port. A carrier the
// relay has not said is bound gets a proof instead (proof.go), every
// unboundProofEvery whether it is idle or not, once the first proofs
// are over: its data waits at the relay for one, and a plain keepalive
// could not bind it.
func (a *agent) keepCarriers(ctx context.Context, dp *datapath) {
	state := map[session.Flow]idleSince{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		every := defaultCarrierKeepalive
		if g, _ := a.Grant(); g != nil && g.Timers.CarrierKeepaliveMS != 0 {
			every = time.Duration(g.Timers.CarrierKeepaliveMS) * time.Millisecond
		}
		now := time.Now()
		live := map[session.Flow]bool{}
		for _, e := range a.flows.Snapshot() {
			c := e.Carrier
			if c.Proto != session.UDP || !c.Relay.IsValid() {
				continue
			}
			live[e.Flow] = true
			out, _, err := a.edgePair(e.Flow, c)
			if err != nil {
				continue
			}
			n, err := dp.XDP.FlowCounters(out.Key)
			if err != nil {
				continue
			}
			st, known := state[e.Flow]
			if !known {
				st.proved = now // the flow's own proofs are on their way (proveFirst)
			}
			if !c.Public.IsValid() {
				if now.Sub(st.proved) >= unboundProofEvery {
					a.sendProof(c, a.binds.get(e.Flow))
					st.proved = now
				}
				state[e.Flow] = idleSince{n.Packets, now, st.proved}
				continue
			}
			switch {
			case !known || n.Packets != st.packets:
				state[e.Flow] = idleSince{n.Packets, now, st.proved}
			case now.Sub(st.since) >= every:
				a.sendKeepalive(dp, c)
				state[e.Flow] = idleSince{n.Packets, now, st.proved}
			}
		}
		for f := range state {
			if !live[f] {
				delete(state, f)
			}
		}
	}
}

func (a *agent) sendKeepalive(dp *datapath, c session.Carrier) {
	pkt, err := udp4(c, xlat.KeepaliveMagic[:])
	if err == nil {
		err = dp.Inj.Packet(pkt)
	}
	if err != nil {
		a.m.Inc(mKeepaliveFailed)
		return
	}
	a.m.Inc(mKeepaliveSent)
}
