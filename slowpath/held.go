package slowpath

import (
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// SendHeld translates the frames a flow's first packets arrived in,
// held by the slow path while the flow opened, with the flow's entries
// just installed (out and back, from xdp.EdgePair or xdp.RelayPair),
// through the reference model as the program at role now would, and
// sends them on. Each one lost is counted in m under the agent's
// declared counters c.
func (dp *Datapath) SendHeld(role xlat.Role, out, back xdp.Mapping, frames [][]byte, m *metrics.Counters, c HeldCounters) {
	for _, fr := range frames {
		res := xlat.Process(role, &dp.Cfg, xdp.Pair{out, back}, nil, fr)
		if !res.Hit {
			m.Inc(c.Untranslated)
			continue
		}
		if err := dp.Inj.Frame(res.Out); err != nil {
			m.Inc(c.InjectFailed)
			dp.log.Debug("held packet not sent", "key", res.Key, "err", err)
		}
	}
}

// HeldCounters are the counters, declared by each agent (its metrics.go),
// SendHeld counts the frames it loses under: the reference model did not
// translate it (held-untranslated), the injector failed
// (held-inject-failed).
type HeldCounters struct{ Untranslated, InjectFailed metrics.Counter }
