package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// crowdedLimiter is a Limiter holding n names whose buckets are all in
// use at the time it returns.
func crowdedLimiter(n int) (*Limiter, time.Time) {
	l := &Limiter{Rate: 1, Burst: 40, MaxNames: n}
	now := time.Unix(1000, 0)
	for i := range n {
		l.Allow("remote-"+strconv.Itoa(i), now)
	}
	return l, now
}

func newcomer(i int) string { return "new-" + strconv.Itoa(i) }

// BenchmarkLimiterNewName: the cost of a name the limiter has not seen,
// with 4096 and 65536 names tracked, (crowded) when every bucket is in
// use, so the newcomer is refused, and (evicting) when they have all
// filled up again, so it takes the least recent one's place. scan is the
// limiter before issue 10 (scanLimiter below), measured in the same run:
// it looked at every bucket to find room.
func BenchmarkLimiterNewName(b *testing.B) {
	for _, n := range []int{4096, 65536} {
		b.Run("crowded/names="+strconv.Itoa(n), func(b *testing.B) {
			l, now := crowdedLimiter(n)
			for i := 0; b.Loop(); i++ {
				l.Allow(newcomer(i), now)
			}
		})
		b.Run("evicting/names="+strconv.Itoa(n), func(b *testing.B) {
			l, now := crowdedLimiter(n)
			for i := 0; b.Loop(); i++ {
				now = now.Add(time.Minute) // every bucket full again
				l.Allow(newcomer(i), now)
			}
		})
		b.Run("scan-crowded/names="+strconv.Itoa(n), func(b *testing.B) {
			l := &scanLimiter{Rate: 1, Burst: 40, MaxNames: n}
			now := time.Unix(1000, 0)
			for i := range n {
				l.Allow("remote-"+strconv.Itoa(i), now)
			}
			for i := 0; b.Loop(); i++ {
				l.Allow(newcomer(i), now)
			}
		})
	}
}

// scanLimiter is the Limiter as it was before issue 10, kept only as the
// benchmark's baseline: with every bucket in use, each new name scanned
// them all.
type scanLimiter struct {
	Rate     float64
	Burst    int
	MaxNames int

	mu sync.Mutex
	by map[string]*rate.Limiter
}

func (l *scanLimiter) Allow(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.by[name]
	if b == nil {
		if len(l.by) >= l.MaxNames {
			for name, b := range l.by {
				if b.TokensAt(now) >= float64(l.Burst) {
					delete(l.by, name)
				}
			}
			if len(l.by) >= l.MaxNames {
				return false
			}
		}
		b = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
		if l.by == nil {
			l.by = map[string]*rate.Limiter{}
		}
		l.by[name] = b
	}
	return b.AllowN(now, 1)
}
