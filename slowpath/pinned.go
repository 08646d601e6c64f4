package slowpath

import (
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// Pinned is a flow rebuilt from the pair of entries a previous agent
// left in the pinned datapath, which went on forwarding it while no
// agent ran.
type Pinned struct {
	Flow      session.Flow
	Carrier   session.Carrier // what the entries hold of it (xdp.EdgeFlow, xdp.RelayFlow)
	Out, Back xdp.Mapping
}

// Pairing is how one agent's flows make entries: xdp.EdgePair and its
// inverse xdp.EdgeFlow, or xdp.RelayPair and xdp.RelayFlow.
type Pairing struct {
	Pair func(session.Flow, session.Carrier) (out, back xdp.Mapping, err error)
	Flow func(out xdp.Mapping) (session.Flow, session.Carrier, bool)
}

var (
	EdgePairing  = Pairing{Pair: xdp.EdgePair, Flow: xdp.EdgeFlow}
	RelayPairing = Pairing{Pair: xdp.RelayPair, Flow: xdp.RelayFlow}
)

// ReadPinned pairs a datapath's entries ms into flows: each entry mine
// takes for a flow's out entry is read back into the flow it was made
// for, and that flow's back entry must be there, exactly as the pairing
// makes it. An entry is in one flow at most. The entries in none are
// returned in rest: half a pair, or entries of no flow this agent could
// have made.
func ReadPinned(ms []xdp.Mapping, p Pairing, mine func(xdp.Mapping) bool) (flows []Pinned, rest []xdp.Mapping) {
	entries := make(map[xlat.Key]xlat.Entry, len(ms))
	for _, m := range ms {
		entries[m.Key] = m.Entry
	}
	used := make(map[xlat.Key]bool, len(ms))
	for _, m := range ms {
		if used[m.Key] || !mine(m) {
			continue
		}
		f, c, ok := p.Flow(m)
		if !ok {
			continue
		}
		out, back, err := p.Pair(f, c)
		if e, ok := entries[back.Key]; err != nil || out != m || !ok || e != back.Entry || used[back.Key] {
			continue
		}
		used[out.Key], used[back.Key] = true, true
		flows = append(flows, Pinned{Flow: f, Carrier: c, Out: out, Back: back})
	}
	for _, m := range ms {
		if !used[m.Key] {
			rest = append(rest, m)
		}
	}
	return flows, rest
}
