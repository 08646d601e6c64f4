package cgnat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/session/cgnat"
)

// Answer is who held a public address:port at a time.
type Answer struct {
	Subscriber netip.Addr
	Since      time.Time // the grant's time (zero in deterministic mode: always)
	Until      time.Time // the release's time; zero if not released by then
	Record     Record    // the grant (dynamic mode)
}

// LookupLog reads the block log r and answers who held addr:port at at:
// the last block granted over that port at or before at, if not released
// by then. ok is false if nobody held it.
func LookupLog(r io.Reader, addr netip.Addr, port uint16, at time.Time) (Answer, bool, error) {
	return lookup(r, addr, port, at, func(b []byte) ([]byte, bool) { return b, len(b) > 0 })
}

// LookupSyslog is LookupLog over a file a syslog collector wrote of the
// relay's records (cgnat.log syslog+...): each record's JSON is its
// message, after the syslog header the collector's template kept; lines
// without one (other programs' messages) are skipped.
func LookupSyslog(r io.Reader, addr netip.Addr, port uint16, at time.Time) (Answer, bool, error) {
	return lookup(r, addr, port, at, func(b []byte) ([]byte, bool) {
		i := bytes.Index(b, []byte(`{"time":`))
		if i < 0 {
			return nil, false
		}
		return b[i:], true
	})
}

// lookup reads the records record finds in each line.
func lookup(r io.Reader, addr netip.Addr, port uint16, at time.Time, record func([]byte) ([]byte, bool)) (Answer, bool, error) {
	var (
		ans  Answer
		held bool
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		b, ok := record(sc.Bytes())
		if !ok {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return Answer{}, false, fmt.Errorf("block log line %d: %w", line, err)
		}
		if rec.Address != addr || port < rec.PortFirst || port > rec.PortLast {
			continue
		}
		if rec.Time.After(at) {
			if held && rec.Event == EventRelease && rec.Subscriber == ans.Subscriber && ans.Until.IsZero() {
				ans.Until = rec.Time
			}
			continue
		}
		switch rec.Event {
		case EventGrant:
			ans, held = Answer{Subscriber: rec.Subscriber, Since: rec.Time, Record: rec}, true
		case EventRelease:
			ans, held = Answer{}, false
		}
	}
	if err := sc.Err(); err != nil {
		return Answer{}, false, err
	}
	return ans, held, nil
}

// LookupDeterministic answers from the formula: in deterministic mode a
// public address:port belongs to one subscriber at all times.
func LookupDeterministic(s *Settings, addr netip.Addr, port uint16) (Answer, bool) {
	sub, ok := cgnat.Deterministic{Config: &s.Datapath, Quota: s.Quota}.Subscriber(addr, port)
	return Answer{Subscriber: sub}, ok
}
