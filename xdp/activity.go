package xdp

// PairPackets is how many packets a flow's two entries translated, both
// directions together: what the agents watch to tell an active flow from
// an idle one. ok is false when neither entry is in the map.
func (d *Datapath) PairPackets(out, back Mapping) (packets uint64, ok bool) {
	co, err1 := d.FlowCounters(out.Key)
	cb, err2 := d.FlowCounters(back.Key)
	if err1 != nil && err2 != nil {
		return 0, false
	}
	return co.Packets + cb.Packets, true
}
