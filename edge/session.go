package edge

import (
	"sync"

	"github.com/unmap-dev/unmap/proto"
)

// sessionState is the control session as the agent knows it: the
// relay's last grant (kept while disconnected: the flows go on with its
// prefix and public IPv4), whether a session is up, and what runs on
// each new grant. Every miss and offer reads it, so its lock guards only
// these three fields.
type sessionState struct {
	mu        sync.Mutex
	grant     *proto.Welcome       // the last session's grant, nil before the first
	up        bool                 // a session is up
	connected func(*proto.Welcome) // called on each new grant; may be nil
}

// get is the last grant and whether its session is up.
func (s *sessionState) get() (*proto.Welcome, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grant, s.up
}

// connect records a new session's grant and returns what to call with
// it (outside the lock: it sets up the LAN and the datapath).
func (s *sessionState) connect(w *proto.Welcome) func(*proto.Welcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grant, s.up = w, true
	return s.connected
}

func (s *sessionState) disconnect() {
	s.mu.Lock()
	s.up = false
	s.mu.Unlock()
}

// onConnect sets what runs on each new grant; before the client runs.
func (s *sessionState) onConnect(fn func(*proto.Welcome)) {
	s.mu.Lock()
	s.connected = fn
	s.mu.Unlock()
}
