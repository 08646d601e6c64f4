package relay

import (
	"net/netip"
	"sync"
	"time"
)

// Failed binds are bounded per CGNAT address: a wrong TCP ISN, or a
// proof with the wrong secret (a bind or a re-bind), spends the
// address's budget, which refills at bindFailEvery (a GCRA). Every
// guess at a carrier's token comes from the address its carrier is
// leased on (the lease key holds it), so the address's budget bounds
// the guesses at each of its carriers too.
//
// Once the budget is spent, TCP binds from the address are refused
// without a check (bind-limited): a 32-bit ISN is what that bound
// protects. Proofs are still checked: their 64-bit secret needs no
// bound (2^64 guesses at any rate the slow path takes are out of
// reach), and refusing them would let a host behind the address keep
// every other carrier behind it from binding with a trickle of forged
// proofs. See proto/SPEC.md, "Binding a carrier".
const (
	bindFailEvery = 100 * time.Millisecond // 10 failures a second
	bindFailBurst = 32
	// bindBudgetsMax bounds the addresses tracked; only addresses with
	// carriers leased fail binds, so it is a backstop.
	bindBudgetsMax = 4096
)

// bindBudgets is the part that bounds failed binds: the GCRA state per
// CGNAT address, the theoretical arrival time of its next failure. Its
// lock is a leaf. The zero value is ready.
type bindBudgets struct {
	mu  sync.Mutex
	tat map[netip.Addr]time.Time
}

// allowed reports whether a has budget left at now.
func (b *bindBudgets) allowed(a netip.Addr, now time.Time) bool {
	return b.next(a).Sub(now) < bindFailBurst*bindFailEvery
}

// next is when a's next failure is due by its budget (zero: never failed).
func (b *bindBudgets) next(a netip.Addr) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tat[a]
}

// spend records a failure of a at now.
func (b *bindBudgets) spend(a netip.Addr, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tat == nil {
		b.tat = map[netip.Addr]time.Time{}
	}
	m := b.tat
	if _, ok := m[a]; !ok && len(m) >= bindBudgetsMax {
		for x, tat := range m {
			if !tat.After(now) {
				delete(m, x) // refilled: starts afresh as it would
			}
		}
		if len(m) >= bindBudgetsMax {
			return // a backstop that can only err on the side of checking
		}
	}
	tat := m[a]
	if tat.Before(now) {
		tat = now
	}
	m[a] = tat.Add(bindFailEvery)
}
