package edge

import (
	"sync"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
)

// bindTokens are the carriers' bind tokens, by flow (a TCP carrier's
// ISN, or the secret a UDP carrier's proofs carry: proof.go), and when
// each carrier was last proved on the relay's CarrierMoved (rebind.go).
// A replay reads every token; it takes the lock for at most
// tokenBatch of them at a time, so a proof or a new flow never waits
// for a whole replay.
type bindTokens struct {
	mu     sync.Mutex
	tokens map[session.Flow]proto.BindToken
	proved map[session.Flow]time.Time // last token keepalive per carrier, bounded by maxProved
}

// tokenBatch bounds the tokens a replay reads under one hold of the lock.
const tokenBatch = 512

// maxProved bounds the carriers whose last proof is remembered:
// forgetting only allows one more proof.
const maxProved = 4096

func newBindTokens() *bindTokens {
	return &bindTokens{tokens: map[session.Flow]proto.BindToken{}, proved: map[session.Flow]time.Time{}}
}

func (b *bindTokens) set(f session.Flow, t proto.BindToken) {
	b.mu.Lock()
	b.tokens[f] = t
	b.mu.Unlock()
}

// get is f's token, zero if it has none.
func (b *bindTokens) get(f session.Flow) proto.BindToken {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens[f]
}

func (b *bindTokens) forget(f session.Flow) {
	b.mu.Lock()
	delete(b.tokens, f)
	b.mu.Unlock()
}

// fill sets each replay entry's token.
func (b *bindTokens) fill(es []proto.ReplayEntry) {
	for len(es) > 0 {
		n := min(len(es), tokenBatch)
		b.mu.Lock()
		for i := range es[:n] {
			es[i].Token = b.tokens[es[i].Flow]
		}
		b.mu.Unlock()
		es = es[n:]
	}
}

// prove is f's token if f's carrier was not proved in the last every
// (ok false: it was); it records now as its last proof.
func (b *bindTokens) prove(f session.Flow, now time.Time, every time.Duration) (t proto.BindToken, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.proved) > maxProved {
		clear(b.proved)
	}
	if now.Sub(b.proved[f]) < every {
		return 0, false
	}
	b.proved[f] = now
	return b.tokens[f], true
}
