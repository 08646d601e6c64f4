package ports

// Pool allocates the ports of one Range for one key (a relay address,
// CGNAT public address and protocol; or an edge protocol). It is not
// safe for concurrent use: Relay and Edge lock around it.
//
// Free ports live in one of two places: never handed out yet (ahead of
// the cursor, which walks the range once from a random start) or in the
// release queue, oldest release first. Ports come from the queue once
// rested, else from the cursor. A port handed out is marked in a
// bitmap kept in chunks of 1024 ports, allocated when first touched.
type Pool struct {
	r      Range
	n      int    // r.Len()
	start  int    // random offset of the first fresh port
	next   int    // fresh positions consumed so far, 0..n
	inUse  int    // ports handed out and not released
	last   uint32 // time of the newest release
	chunks []*chunk
	q      queue
}

const chunkBits = 1024

// chunk holds, for 1024 ports, which are in use and which were ever
// handed out (seen), so the cursor skips ports that live in the queue.
type chunk struct{ use, seen [chunkBits / 64]uint64 }

// NewPool makes a pool of r whose fresh ports start at r.First+start
// (taken modulo the range's length) and wrap around.
func NewPool(r Range, start int) *Pool {
	n := r.Len()
	if start < 0 {
		start = -start
	}
	return &Pool{r: r, n: n, start: start % n, chunks: make([]*chunk, (n+chunkBits-1)/chunkBits)}
}

// InUse is the number of ports handed out and not released.
func (p *Pool) InUse() int { return p.inUse }

// Idle reports that no port is in use and the newest release is at least
// quarantine old, so dropping the pool loses nothing that matters.
func (p *Pool) Idle(now, quarantine uint32) bool {
	return p.inUse == 0 && (p.q.len() == 0 || now-p.last >= quarantine)
}

// Take hands out a port: the oldest released one if it was released at
// least quarantine ago, else a fresh one, else none. Preferring rested
// ports keeps the queue as short as the releases of one quarantine
// period, instead of every port released until the range has been used
// once. Times are seconds on any clock that does not go back.
func (p *Pool) Take(now, quarantine uint32) (uint16, error) {
	resting := false
	for p.q.len() > 0 {
		e := p.q.front()
		c := p.chunk(int(e.idx))
		w, b := word(int(e.idx))
		if c.use[w]&b != 0 {
			p.q.pop() // claimed while queued: the entry is stale
			continue
		}
		if now-e.at < quarantine {
			resting = true
			break
		}
		p.q.pop()
		c.use[w] |= b
		p.inUse++
		return p.port(int(e.idx)), nil
	}
	for p.next < p.n {
		i := p.start + p.next
		if i >= p.n {
			i -= p.n
		}
		p.next++
		c := p.chunk(i)
		w, b := word(i)
		if c.seen[w]&b != 0 {
			continue // claimed after a restart; lives in the queue once released
		}
		c.seen[w] |= b
		c.use[w] |= b
		p.inUse++
		return p.port(i), nil
	}
	if resting {
		return 0, refuse(ReasonQuarantined, "%d ports of %v wait out a %ds quarantine", p.q.len(), p.r, quarantine)
	}
	return 0, refuse(ReasonExhausted, "all %d ports of %v in use", p.n, p.r)
}

// Put releases port at time now; it goes to the back of the queue.
func (p *Pool) Put(port uint16, now uint32) error {
	if !p.r.Contains(port) {
		return refuse(ReasonOutOfRange, "port %d not in %v", port, p.r)
	}
	i := int(port - p.r.First)
	c := p.chunk(i)
	w, b := word(i)
	if c.use[w]&b == 0 {
		return refuse(ReasonNotGranted, "port %d is not in use", port)
	}
	c.use[w] &^= b
	p.inUse--
	p.last = now
	p.q.push(qent{at: now, idx: uint16(i)})
	return nil
}

// Claim marks port in use without taking it from the cursor or the
// queue: after a restart, carriers that survived (in pinned XDP maps, or
// replayed by an edge) keep their ports. A port claimed while queued and
// released again may come back out of the queue before its quarantine
// ends, once; claims happen at start-up, so this is accepted.
func (p *Pool) Claim(port uint16) error {
	if !p.r.Contains(port) {
		return refuse(ReasonOutOfRange, "port %d not in %v", port, p.r)
	}
	i := int(port - p.r.First)
	c := p.chunk(i)
	w, b := word(i)
	if c.use[w]&b != 0 {
		return refuse(ReasonInUse, "port %d is already in use", port)
	}
	c.use[w] |= b
	c.seen[w] |= b
	p.inUse++
	return nil
}

// Used reports whether port is handed out.
func (p *Pool) Used(port uint16) bool {
	if !p.r.Contains(port) {
		return false
	}
	i := int(port - p.r.First)
	c := p.chunks[i/chunkBits]
	w, b := word(i)
	return c != nil && c.use[w]&b != 0
}

func (p *Pool) chunk(i int) *chunk {
	c := p.chunks[i/chunkBits]
	if c == nil {
		c = new(chunk)
		p.chunks[i/chunkBits] = c
	}
	return c
}

func word(i int) (int, uint64) { return (i % chunkBits) / 64, 1 << (i % 64) }

func (p *Pool) port(i int) uint16 { return p.r.First + uint16(i) }

// qent is a released port (its index in the range) and when.
type qent struct {
	at  uint32
	idx uint16
}

// queue is a growable ring of released ports, oldest first.
type queue struct {
	buf  []qent
	head int
	n    int
}

func (q *queue) len() int    { return q.n }
func (q *queue) front() qent { return q.buf[q.head] }

func (q *queue) pop() {
	q.head++
	q.n--
	if q.head == len(q.buf) {
		q.head = 0
	}
	// Give memory back after a burst of releases; halving at a quarter
	// full keeps pops amortised O(1).
	if len(q.buf) > 64 && q.n < len(q.buf)/4 {
		q.resize(len(q.buf) / 2)
	}
}

func (q *queue) resize(size int) {
	buf := make([]qent, size)
	if q.head+q.n <= len(q.buf) {
		copy(buf, q.buf[q.head:q.head+q.n])
	} else {
		k := copy(buf, q.buf[q.head:])
		copy(buf[k:], q.buf[:q.n-k])
	}
	q.buf, q.head = buf, 0
}

func (q *queue) push(e qent) {
	if q.n == len(q.buf) {
		q.resize(max(16, 2*len(q.buf)))
	}
	t := q.head + q.n
	if t >= len(q.buf) {
		t -= len(q.buf)
	}
	q.buf[t] = e
	q.n++
}
