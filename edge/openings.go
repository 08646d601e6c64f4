package edge

import (
	"sync"

	"github.com/unmap-dev/unmap/session"
)

// maxHeld bounds the packets held for one flow while it opens.
const maxHeld = 8

// maxOpening bounds the flows opening at once (each holds a goroutine, a
// carrier port and up to maxHeld packets until the relay answers): a LAN
// host that opens flows faster than the control channel can carry them
// has the excess refused and counted, not queued without end.
const maxOpening = 1024

// openings are the outbound flows waiting for the relay, with the first
// packets held for each; safe for concurrent use.
type openings struct {
	mu   sync.Mutex
	m    map[session.Flow][][]byte
	most int
}

func newOpenings(most int) *openings {
	return &openings{m: map[session.Flow][][]byte{}, most: most}
}

// hold keeps pkt (nil: a packet only partly handed over, nothing to
// keep) for f. first says f was not opening: the caller opens it. why
// names a packet that was not kept ("" if it was, or pkt was nil).
func (o *openings) hold(f session.Flow, pkt []byte) (first bool, why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	held, opening := o.m[f]
	switch {
	case !opening && len(o.m) >= o.most:
		return false, "opening-full"
	case opening && len(held) >= maxHeld:
		return false, "held-overflow"
	}
	if pkt != nil {
		held = append(held, pkt)
	}
	o.m[f] = held
	return !opening, ""
}

// take ends f's opening and hands over its held packets.
func (o *openings) take(f session.Flow) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	held := o.m[f]
	delete(o.m, f)
	return held
}
