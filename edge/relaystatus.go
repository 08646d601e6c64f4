package edge

import (
	"fmt"

	"github.com/unmap-dev/unmap/proto"
)

// relayCounterNames name the counters of the relay's Pongs in `unmap
// status` (section relay): the relay's view of this site.
var relayCounterNames = map[proto.CounterID]string{
	proto.CounterFlows:         "flows",
	proto.CounterFlowOpens:     "opened",
	proto.CounterFlowCloses:    "closed",
	proto.CounterRefusals:      "refused",
	proto.CounterCarrierPktIn:  "carrier_packets_in",
	proto.CounterCarrierPktOut: "carrier_packets_out",
	proto.CounterDrops:         "datapath_drops",
}

// relayStatus is the relay section of `unmap status`: the counters of
// the relay's last Pong, by name (an id this edge does not know, by
// number).
func relayStatus(cs []proto.Counter) map[string]uint64 {
	out := make(map[string]uint64, len(cs))
	for _, c := range cs {
		name, ok := relayCounterNames[c.ID]
		if !ok {
			name = fmt.Sprintf("counter_%d", c.ID)
		}
		out[name] = c.Value
	}
	return out
}
