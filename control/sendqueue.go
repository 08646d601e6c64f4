package control

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
)

// sendQueue is what a relay session has to tell its edge and has not yet
// written: encoded frames, bounded in bytes. One goroutine per session
// (Session.writer) writes them, with a deadline, so that the relay's
// shared goroutines (the datapath's miss loop, the expiry sweep) only
// ever append here and never wait on one edge's stream: an edge that
// stops reading stalls its own session, not every site's.
type sendQueue struct {
	max int // bytes queued at most

	mu      sync.Mutex
	buf     []byte // frames not yet taken by the writer
	stopped bool
	wake    chan struct{} // 1-buffered: buf has frames
	room    chan struct{} // 1-buffered: the writer took buf
}

func newSendQueue(max int) *sendQueue {
	return &sendQueue{max: max, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push outcomes.
type pushResult int

const (
	pushed  pushResult = iota
	full               // the queue holds max bytes: nothing added
	stopped            // the session is ending
)

// push appends m's frame unless the queue is full or stopped; an error
// is m's own (too large to encode).
func (q *sendQueue) push(m proto.Message) (pushResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return stopped, nil
	}
	b, err := proto.AppendMessage(q.buf, m)
	if err != nil {
		return pushed, err
	}
	// One frame always fits an empty queue, whatever max says.
	if len(b) > q.max && len(q.buf) > 0 {
		return full, nil
	}
	q.buf = b
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return pushed, nil
}

// take hands the writer every queued frame; it gives back the buffer it
// was handed last time (done), which take reuses unless a burst made it
// large.
func (q *sendQueue) take(done []byte) []byte {
	q.mu.Lock()
	b := q.buf
	if cap(done) <= maxKeptBuffer {
		q.buf = done[:0]
	} else {
		q.buf = nil
	}
	q.mu.Unlock()
	select {
	case q.room <- struct{}{}:
	default:
	}
	return b
}

// maxKeptBuffer bounds the buffer an idle session keeps: a burst's
// buffer is let go, not held by each of thousands of sessions.
const maxKeptBuffer = 16 << 10

// stop refuses every later push and drops what is queued.
func (q *sendQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.buf = nil
	q.mu.Unlock()
}

// errQueueFull: an advisory message was dropped because the edge is not
// reading fast enough.
var errQueueFull = errors.New("control: the edge's send queue is full")

// post queues m for the edge without waiting: it is what the relay's
// shared goroutines call. With the queue full the edge has stopped
// reading (or reads far slower than its flows need): an advisory m is
// dropped (send_dropped_<type>), anything else ends the session
// (send_queue_full), because a lost CarrierBound, FlowClose or offer
// would leave the two ends disagreeing; the edge reconnects and replays.
func (ss *Session) post(m proto.Message, advisory bool) error {
	res, err := ss.q.push(m)
	switch {
	case err != nil:
		return err
	case res == stopped:
		return ErrSessionEnded
	case res == full && advisory:
		ss.srv.counters.dropped(m.Type())
		return errQueueFull
	case res == full:
		ss.stalled(mSendQueueFull, fmt.Errorf("%d bytes queued for the edge, %v refused", ss.q.max, m.Type()))
		return ErrSessionEnded
	}
	return nil
}

// reply queues an answer of the read loop, waiting for room: an edge that
// sends requests faster than it reads their answers is held back on its
// own session (the writer's deadline bounds the wait).
func (ss *Session) reply(m proto.Message) error {
	for {
		res, err := ss.q.push(m)
		switch {
		case err != nil:
			return err
		case res == stopped:
			return ErrSessionEnded
		case res == pushed:
			return nil
		}
		select {
		case <-ss.q.room:
		case <-ss.done:
			return ErrSessionEnded
		}
	}
}

// writer writes the queued frames to the edge until the session ends,
// each write bounded by SendTimeout: past it the edge is not reading and
// the session is closed (send_stalled).
func (ss *Session) writer() {
	defer close(ss.wrote)
	var b []byte
	for {
		select {
		case <-ss.q.wake:
		case <-ss.done:
			return
		}
		b = ss.q.take(b)
		if len(b) == 0 {
			continue
		}
		ss.str.SetWriteDeadline(time.Now().Add(ss.srv.cfg.SendTimeout))
		if err := ss.w.write(b); err != nil {
			var ne net.Error
			switch {
			case ss.conn.Context().Err() != nil: // the connection ended first
			case errors.As(err, &ne) && ne.Timeout():
				ss.stalled(mSendStalled, fmt.Errorf("a write to the edge took over %v", ss.srv.cfg.SendTimeout))
			default:
				ss.stalled(mSendFailed, err)
			}
			return
		}
	}
}

// stalled closes a session whose edge does not take what it is sent,
// once, counting why. The close runs on its own goroutine: the caller
// may be the relay's miss loop.
func (ss *Session) stalled(counter metrics.Counter, err error) {
	ss.stall.Do(func() {
		ss.q.stop()
		ss.srv.counters.inc(counter)
		ss.srv.cfg.Log.Warn("session closed: the edge is not reading", "site", ss.site, "why", counter.Name(), "err", err)
		go ss.srv.closeConn(ss.conn, fConnClosed, proto.CodeTimeout, counter.Name())
	})
}
