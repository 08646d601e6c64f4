package ports

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestPoolFreshThenOldestReleased(t *testing.T) {
	p := NewPool(Range{100, 104}, 3)
	var got []uint16
	for range 5 {
		port, err := p.Take(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, port)
	}
	// From offset 3, wrapping.
	want := []uint16{103, 104, 100, 101, 102}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("fresh order %v, want %v", got, want)
		}
	}
	if _, err := p.Take(0, 0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("take from a full pool: %v", err)
	}
	for _, port := range []uint16{101, 104, 100} {
		if err := p.Put(port, 10); err != nil {
			t.Fatal(err)
		}
	}
	// Released ports come back oldest first, after the quarantine.
	if _, err := p.Take(15, 10); !errors.Is(err, ErrQuarantined) {
		t.Fatalf("take inside quarantine: %v", err)
	}
	for _, want := range []uint16{101, 104, 100} {
		port, err := p.Take(20, 10)
		if err != nil || port != want {
			t.Fatalf("take = %d, %v; want %d", port, err, want)
		}
	}
}

func TestPoolRefusals(t *testing.T) {
	p := NewPool(Range{2000, 2999}, 0)
	if err := p.Put(2000, 0); !errors.Is(err, ErrNotGranted) {
		t.Errorf("put of a free port: %v", err)
	}
	if err := p.Put(3000, 0); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("put out of range: %v", err)
	}
	if err := p.Claim(1999); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("claim out of range: %v", err)
	}
	port, _ := p.Take(0, 0)
	if err := p.Claim(port); !errors.Is(err, ErrInUse) {
		t.Errorf("claim of a taken port: %v", err)
	}
	if err := p.Put(port, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(port, 0); !errors.Is(err, ErrNotGranted) {
		t.Errorf("double put: %v", err)
	}
}

// TestPoolClaimSkipped checks a claimed fresh port is never handed out
// by the cursor, and a claimed queued port is not handed out of the queue.
func TestPoolClaimSkipped(t *testing.T) {
	p := NewPool(Range{1, 4}, 0)
	if err := p.Claim(2); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{2: true}
	for range 3 {
		port, err := p.Take(0, 0)
		if err != nil || seen[port] {
			t.Fatalf("take = %d, %v (held %v)", port, err, seen)
		}
		seen[port] = true
	}
	if _, err := p.Take(0, 0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
	p.Put(3, 1)
	p.Put(1, 1)
	if err := p.Claim(3); err != nil { // queued, now claimed
		t.Fatal(err)
	}
	port, err := p.Take(5, 0)
	if err != nil || port != 1 {
		t.Fatalf("take = %d, %v; want 1 (3 is claimed)", port, err)
	}
	if _, err := p.Take(5, 0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
}

// TestPoolModel runs random take/put/claim sequences against a map
// model: the pool never hands out a port twice, never refuses while a
// rested port is free, and agrees on what is in use.
func TestPoolModel(t *testing.T) {
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 7))
		r := Range{First: uint16(1 + rng.IntN(60000)), Last: 0}
		r.Last = r.First + uint16(rng.IntN(3000))
		q := uint32(rng.IntN(5))
		p := NewPool(r, rng.IntN(r.Len()))
		used := map[uint16]bool{}
		freedAt := map[uint16]uint32{} // ports released at least once, and when
		now := uint32(0)
		for step := range 20000 {
			now += uint32(rng.IntN(2))
			switch op := rng.IntN(10); {
			case op < 5:
				port, err := p.Take(now, q)
				if err != nil {
					// Refusal is only right when no port is free and rested.
					for x := int(r.First); x <= int(r.Last); x++ {
						at, released := freedAt[uint16(x)]
						if !used[uint16(x)] && (!released || now-at >= q) {
							t.Fatalf("seed %d step %d: refused (%v) with port %d free", seed, step, err, x)
						}
					}
					continue
				}
				if used[port] || !r.Contains(port) {
					t.Fatalf("seed %d step %d: handed out %d twice or out of %v", seed, step, port, r)
				}
				if at, released := freedAt[port]; released && now-at < q {
					t.Fatalf("seed %d step %d: port %d reused inside quarantine", seed, step, port)
				}
				used[port] = true
			case op < 9:
				port := r.First + uint16(rng.IntN(r.Len()))
				err := p.Put(port, now)
				if (err == nil) != used[port] {
					t.Fatalf("seed %d step %d: put %d = %v, model in use %v", seed, step, port, err, used[port])
				}
				if err == nil {
					delete(used, port)
					freedAt[port] = now
				}
			default:
				// Claims only of ports never released, as at start-up:
				// claimed queued ports may rest less (see Claim).
				port := r.First + uint16(rng.IntN(r.Len()))
				if _, released := freedAt[port]; released {
					continue
				}
				err := p.Claim(port)
				if (err == nil) == used[port] {
					t.Fatalf("seed %d step %d: claim %d = %v, model in use %v", seed, step, port, err, used[port])
				}
				used[port] = true
			}
			if p.InUse() != len(used) {
				t.Fatalf("seed %d step %d: pool says %d in use, model %d", seed, step, p.InUse(), len(used))
			}
		}
	}
}

func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 200, 201, 202})
	f.Add([]byte{9, 9, 9, 9, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 10000 {
			return
		}
		p := NewPool(Range{10, 25}, 5)
		used := map[uint16]bool{}
		for i, op := range ops {
			port := 10 + uint16(op%16)
			switch op >> 6 {
			case 0, 1:
				if got, err := p.Take(uint32(i), 2); err == nil {
					if used[got] {
						t.Fatalf("port %d handed out twice", got)
					}
					used[got] = true
				}
			case 2:
				if p.Put(port, uint32(i)) == nil {
					if !used[port] {
						t.Fatalf("put of free port %d accepted", port)
					}
					delete(used, port)
				}
			case 3:
				if p.Claim(port) == nil {
					if used[port] {
						t.Fatalf("claim of used port %d accepted", port)
					}
					used[port] = true
				}
			}
			if p.InUse() != len(used) {
				t.Fatalf("in use %d, model %d", p.InUse(), len(used))
			}
		}
	})
}

// TestPoolPrefersRested checks a released port that has rested is reused
// before a fresh one, and an unrested one is not.
func TestPoolPrefersRested(t *testing.T) {
	p := NewPool(Range{1000, 1999}, 0)
	a, _ := p.Take(0, 10)
	p.Put(a, 0)
	if b, _ := p.Take(5, 10); b == a {
		t.Fatalf("port %d reused inside its quarantine", a)
	}
	if c, _ := p.Take(10, 10); c != a {
		t.Fatalf("took %d, want the rested %d before fresh ports", c, a)
	}
}

// TestQueueModel pushes and pops at random against a slice, through
// growth, wrap-around and shrinking.
func TestQueueModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var q queue
	var model []qent
	maxCap := 0
	for step := range 200000 {
		// Bursts: long runs of pushes, then long runs of pops.
		pushing := (step/5000)%2 == 0
		if pushing && rng.IntN(10) < 8 || len(model) == 0 {
			e := qent{at: uint32(step), idx: uint16(rng.IntN(65536))}
			q.push(e)
			model = append(model, e)
		} else {
			if q.front() != model[0] {
				t.Fatalf("step %d: front %v, model %v", step, q.front(), model[0])
			}
			q.pop()
			model = model[1:]
		}
		if q.len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, q.len(), len(model))
		}
		maxCap = max(maxCap, len(q.buf))
	}
	for len(model) > 0 {
		if q.front() != model[0] {
			t.Fatal("drain order differs")
		}
		q.pop()
		model = model[1:]
	}
	if len(q.buf) > 64 || maxCap < 1024 {
		t.Errorf("buffer %d after draining (peak %d): it should grow and shrink", len(q.buf), maxCap)
	}
}
