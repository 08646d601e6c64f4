package control

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential with jitter in its upper half: after n failures
// it waits a random time in [d/2, d], d = min(max, min·2^n), so edges that
// lost the same relay at once do not come back in step.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }
