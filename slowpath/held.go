package slowpath

import (
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/xdp"
)

// SendHeld translates the frames a flow's first packets arrived in,
// held by the slow path while the flow opened, with the flow's entries
// just installed (out and back, from xdp.EdgePair or xdp.RelayPair),
// through the reference model as the program at role now would, and
// sends them on. Each one lost is counted: held-untranslated, or
// held-inject-failed.
func (dp *Datapath) SendHeld(role xlat.Role, out, back xdp.Mapping, frames [][]byte, count func(string)) {
	for _, fr := range frames {
		res := xlat.Process(role, &dp.Cfg, xdp.Pair{out, back}, nil, fr)
		if !res.Hit {
			count("held-untranslated")
			continue
		}
		if err := dp.Inj.Frame(res.Out); err != nil {
			count("held-inject-failed")
			dp.log.Debug("held packet not sent", "key", res.Key, "err", err)
		}
	}
}
