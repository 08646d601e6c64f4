package relay

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

// BenchmarkInboundNewRemote: the slow path's cost for a packet from a
// remote it has not seen, to a site with a session, once the offer
// limiter tracks 4096 remotes whose buckets are all in use (a flood from
// many sources, on a clock that does not move): the refusal every flood
// packet meets. Issue 10 measured 119 µs for it before the limiter's
// constant-time room and the gate before the relay's lock; the benchmark
// builds on the code before them too, to compare in one run.
func BenchmarkInboundNewRemote(b *testing.B) {
	s, err := Load("../examples/relay.yaml")
	if err != nil {
		b.Fatal(err)
	}
	c, err := newAgent(s, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	e := &fakeEdge{site: "home", id: 1, answer: refuseAll(proto.CodeRefused)}
	c.inb.edges = map[string]edgeSide{"home": e}
	c.inb.offers.Rate, c.inb.offers.Burst = offerRate, offerBurst
	for i := range 4096 {
		c.inb.offers.Allow("home tracked-"+strconv.Itoa(i), now)
	}
	ctx := context.Background()
	k, _ := udpTo("2001:db8:5::10", 7000)
	n := 0
	for ; b.Loop(); n++ {
		k.Src = floodKey(n)[0]
		c.inbound(ctx, k, []byte("flood"))
	}
	b.StopTimer()
	if offers, refused := e.offered(), c.countOf("inbound-offer-rate"); offers != 0 || refused != uint64(n) {
		b.Fatalf("%d offers made, %d of %d refused by the offer limit: want every new remote refused by it", offers, refused, n)
	}
}

// floodKey is a UDP packet to the site host from remote i, each in a
// /64 of its own within 2001:db8::/32, as spoofed sources would be.
func floodKey(i int) (k [2]netip.Addr) {
	src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xf0, byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
	return [2]netip.Addr{src, netip.MustParseAddr("2001:db8:5::10")}
}
