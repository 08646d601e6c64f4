package edge

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session/handshake"
)

// TestOfferTCPHostWaitsBounded: a SYN flood to an allowed port holds at
// most maxHostWaits carrier ports while the LAN host has not answered;
// beyond, offers are refused at once (counted, no port taken), and the
// bound frees when the host answers.
func TestOfferTCPHostWaitsBounded(t *testing.T) {
	a, _ := handshakeAgent(t)
	a.inject = func([]byte) error { return nil } // the host never answers by itself
	offer := func(i int) *proto.FlowOffer {
		syn := hsSYN
		syn.SrcPort = uint16(40000 + i)
		h, err := syn.Header()
		if err != nil {
			t.Fatal(err)
		}
		m := offerOf(t)
		m.SYN = h
		m.Flow.Remote = netip.AddrPortFrom(m.Flow.Remote.Addr(), syn.SrcPort)
		return m
	}
	results := make([]proto.Code, maxHostWaits)
	var wg sync.WaitGroup
	for i := range maxHostWaits {
		wg.Go(func() { results[i] = a.offerTCP(offer(i), hsFlow.Site).Result })
	}
	waitFor(t, "the offers to wait for the host", func() (int, bool) {
		a.hs.mu.Lock()
		defer a.hs.mu.Unlock()
		return a.hs.hostWaits, a.hs.hostWaits == maxHostWaits
	})
	start := time.Now()
	if r := a.offerTCP(offer(maxHostWaits), hsFlow.Site); r.Result != proto.CodeNoResources || time.Since(start) > time.Second {
		t.Errorf("offer past the bound: %v after %v", r.Result, time.Since(start))
	}
	if got := a.ports.InUse(); got != maxHostWaits {
		t.Errorf("%d carrier ports in use, want %d", got, maxHostWaits)
	}
	if a.Counts()["inbound-tcp-pending-full"] != 1 {
		t.Errorf("counts %v", a.Counts())
	}
	// The host resets each: the offers end, their ports come back.
	for i := range maxHostWaits {
		m := offer(i)
		rst := handshake.Segment{SrcPort: 443, DstPort: m.Flow.Remote.Port(), Ack: hsSYN.Seq + 1, Flags: handshake.RST | handshake.ACK}
		a.handshakeLAN(m.Flow, frame(t, m.Flow.Site.Addr(), m.Flow.Remote.Addr(), rst))
	}
	wg.Wait()
	for i, r := range results {
		if r != proto.CodeClosed {
			t.Errorf("offer %d: %v, want closed", i, r)
		}
	}
	if a.hs.hostWaits != 0 || a.ports.InUse() != 0 {
		t.Errorf("after: %d waiting, %d ports in use", a.hs.hostWaits, a.ports.InUse())
	}
}
