package ports

import (
	"math/rand/v2"
	"time"
)

// DefaultQuarantine is how long a released port rests before reuse when
// the config says nothing: the TCP transitory timeout (RFC 5382), which
// also outlasts the 2-minute UDP minimum (RFC 4787), so a CGNAT that
// keeps a mapping for the old carrier has dropped it by then.
const DefaultQuarantine = 4 * time.Minute

// ticker turns an injected clock into the whole seconds pools count in.
type ticker struct {
	now   func() time.Time
	epoch time.Time
	q     uint32 // quarantine in seconds
	start func(n int) int
}

func newTicker(now func() time.Time, quarantine time.Duration) ticker {
	if now == nil {
		now = time.Now
	}
	switch {
	case quarantine == 0:
		quarantine = DefaultQuarantine
	case quarantine < 0:
		quarantine = 0 // explicitly none
	}
	return ticker{
		now:   now,
		epoch: now(),
		q:     uint32((quarantine + time.Second - 1) / time.Second),
		start: rand.IntN, // unpredictable first ports; tests replace it
	}
}

func (t *ticker) tick() uint32 {
	d := t.now().Sub(t.epoch)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}
