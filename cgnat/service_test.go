package cgnat

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/xdp"
)

// TestServiceMiss: what the agent does with each miss relay_sub hands
// over (cgnat-no-block), bad ones included: a frame too short for an
// IPv4 header, or neither IPv4 nor IPv6, is counted and dropped (not-ip);
// a source outside the inside prefix, or IPv6 without NAT64, grants
// nothing (an error counted, no panic);
// a frame longer than the ring's copy gets its block but is not sent
// again (truncated); a good one gets its block and goes through the
// datapath again, once.
func TestServiceMiss(t *testing.T) {
	s := testSettings(t, false)
	dp := newFake(&s.Datapath)
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	a, err := NewAgent(s, dp, blog, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var resent [][]byte
	sv := &Service{A: a, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		resend: func(m xdp.Miss) error { resent = append(resent, m.Data); return nil }}
	udp := func(src string) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: netip.MustParseAddr(src), SPort: 5000, Dst: xlattest.Remote4, DPort: 53, Payload: []byte("x")})
	}
	good := udp(subA.String())
	v6 := xlattest.Build(xlattest.Spec{Proto: 17, Src: netip.MustParseAddr("2001:db8::1"), SPort: 5000, Dst: netip.MustParseAddr("2001:db8::2"), DPort: 53})
	for _, m := range []xdp.Miss{
		{}, {Data: good[:13]}, {Data: good[:14+19]}, {Data: v6, Len: len(v6)},
		{Data: udp("10.9.9.9"), Len: len(good)},
		{Data: good, Len: 1600},
		{Data: good, Len: len(good)},
	} {
		sv.Miss(m)
	}
	if a.M.Get(mFirstNotIP) != 3 || a.M.Get(mErrGrant) != 2 || a.M.Get(mFirstTrunc) != 1 || a.M.Get(mFirstResent) != 1 ||
		len(resent) != 1 || len(dp.subs[subA].Blocks) != 1 {
		t.Errorf("counters %v, resent %d, blocks %v", a.M.Snapshot(), len(resent), dp.subs[subA])
	}
}
