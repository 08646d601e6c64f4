package control

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/proto"
)

// movedEdge is a fake edge that answers CarrierMoved.
type movedEdge struct {
	*fakeEdge
	moved chan *proto.CarrierMoved
}

func (m movedEdge) Moved(c *proto.CarrierMoved) { m.moved <- c }

// CarrierMoved reaches an edge that offered rebind and is refused, at the
// relay's side, for one that did not.
func TestCarrierMoved(t *testing.T) {
	p := newPKI(t)
	relay := newFakeRelay()
	srv := startRelay(t, p, relay, "")
	fl := testFlow("home-1", 1)
	seen := netip.MustParseAddrPort("100.64.9.9:40002")

	edge := movedEdge{newFakeEdge(), make(chan *proto.CarrierMoved, 1)}
	c := startEdge(t, p, "home-1", srv.Addr(), edge, func(cfg *ClientConfig) { cfg.Hello.Capabilities |= proto.CapRebind })
	waitConnected(t, c)
	ss := recvWithin(t, relay.started, "session")
	if err := ss.Moved(&proto.CarrierMoved{Flow: fl, Public: seen}); err != nil {
		t.Fatal(err)
	}
	if m := recvWithin(t, edge.moved, "carrier moved"); m.Flow != fl || m.Public != seen {
		t.Errorf("moved = %+v", m)
	}

	old := newFakeEdge()
	c2 := startEdge(t, p, "home-2", srv.Addr(), old)
	waitConnected(t, c2)
	ss2 := recvWithin(t, relay.started, "session")
	if err := ss2.Moved(&proto.CarrierMoved{Flow: testFlow("home-2", 1), Public: seen}); !errors.Is(err, ErrNoRebind) {
		t.Errorf("moved to an edge without rebind: %v", err)
	}
}
