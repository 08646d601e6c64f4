package xdp

import "github.com/unmap-dev/unmap/session/xlat"

// PairActivity is what the agents watch of a flow's two entries: how many
// packets they translated, both directions together, and whether its TCP
// connection ended (a RST either way, or a FIN each way), after which the
// flow's timeout is the transitory one. ok is false when neither entry
// is in the map.
func (d *Datapath) PairActivity(out, back Mapping) (packets uint64, closed, ok bool) {
	co, err1 := d.FlowCounters(out.Key)
	cb, err2 := d.FlowCounters(back.Key)
	if err1 != nil && err2 != nil {
		return 0, false, false
	}
	closed = (co.Ended|cb.Ended)&xlat.EndRST != 0 || co.Ended&cb.Ended&xlat.EndFIN != 0
	return co.Packets + cb.Packets, closed, true
}
