package cgnat

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Record is one line of the block log (RFC 6888 REQ-12): a block granted
// to or released by a subscriber. A block holds the same ports in every
// protocol the CGNAT translates, so one record covers them all.
type Record struct {
	Time       time.Time  `json:"time"`
	Event      string     `json:"event"` // grant or release
	Subscriber netip.Addr `json:"subscriber"`
	Address    netip.Addr `json:"address"`
	PortFirst  uint16     `json:"port_first"`
	PortLast   uint16     `json:"port_last"`
	Protocol   string     `json:"protocol"` // tcp,udp,icmp: the block's ports in each
}

// Events of a Record.
const (
	EventGrant   = "grant"
	EventRelease = "release"
)

// BlockProtocols is a record's protocol: a block's ports are the
// subscriber's in TCP, UDP and ICMP echo identifiers alike.
const BlockProtocols = "tcp,udp,icmp"

// BlockLog appends records to a file, one JSON line each, and syncs the
// file before a record's grant reaches the datapath: a block the
// datapath hands out is on disk first, so a crash or restart loses no
// grant (a release is written before the block may be granted again).
// Reopen (on SIGHUP) opens the path again after log rotation moved it.
type BlockLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenLog opens (or creates, mode 0640) the log at path for appending.
func OpenLog(path string) (*BlockLog, error) {
	l := &BlockLog{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen closes the file and opens path again (log rotation).
func (l *BlockLog) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("cgnat block log: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Write appends r and syncs the file.
func (l *BlockLog) Write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("cgnat block log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("cgnat block log: %w", err)
	}
	return nil
}

// Close closes the file.
func (l *BlockLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
