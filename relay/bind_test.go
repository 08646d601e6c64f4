package relay

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/xlat"
)

// bindFixture is a relay with unbound carriers leased to one CGNAT
// address, and no datapath: bind's decisions only.
type bindFixture struct {
	c         *agent
	relayAddr netip.Addr
	public    netip.Addr
	now       time.Time
}

func newBindFixture(t *testing.T) *bindFixture {
	t.Helper()
	fx := &bindFixture{relayAddr: netip.MustParseAddr("198.51.100.6"), public: netip.MustParseAddr("198.51.100.2"),
		now: time.Unix(1_700_000_000, 0)}
	s := &Settings{
		Addresses:    []netip.Addr{fx.relayAddr},
		CarrierPorts: config.PortRange{First: 20000, Last: 20063},
		Timers:       config.Timers{UDP: 2 * time.Minute, TCPEstablished: 124 * time.Minute, TCPTransitory: 4 * time.Minute, ICMP: time.Minute},
		Sites:        []Site{{ID: "home", Prefix: netip.MustParsePrefix("2001:db8:5::/56"), MaxFlows: 64}},
	}
	c, err := newAgent(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return fx.now }
	fx.c = c
	return fx
}

// add leases an unbound carrier of protocol p for a flow from site port
// sport, bound by token.
func (fx *bindFixture) add(t *testing.T, p session.Proto, sport uint16, token proto.BindToken) (session.Flow, *carrier) {
	t.Helper()
	f := session.Flow{Proto: p, Site: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5::2"), sport),
		Remote: netip.MustParseAddrPort("[2001:db8:6::2]:53")}
	lease, err := fx.c.ports.Grant("home", fx.public, p)
	if err != nil {
		t.Fatal(err)
	}
	k := &carrier{site: "home", lease: lease, edgePort: 61000, token: token}
	fx.c.flows.mu.Lock()
	fx.c.add(f, k)
	fx.c.flows.mu.Unlock()
	return f, k
}

func (fx *bindFixture) key(k *carrier, from uint16) xlat.Key {
	return xlat.Key{Proto: uint8(k.lease.Proto), Src: fx.public, Dst: fx.relayAddr, SPort: from, DPort: k.lease.Port}
}

func tcpSeq(seq uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = 5 << 4
	b[13] = 0x02
	return b
}

func (fx *bindFixture) counts() map[string]uint64 {
	return fx.c.status().(carrierStatus).Slowpath
}

// TestBindByProof: a UDP carrier binds only to a proof (a token
// keepalive) carrying its secret. A datagram whose payload the edge's
// first packet would carry binds nothing, whatever it is (the hijack of
// issue 10: the token was a hash of the first payload). The proof is
// consumed; a proof sent again from the bound port is consumed too.
func TestBindByProof(t *testing.T) {
	fx := newBindFixture(t)
	const secret = proto.BindToken(0x1122334455667788)
	f, k := fx.add(t, session.UDP, 1, secret)
	for name, l4 := range map[string][]byte{
		"empty datagram":    udpPayload(nil),
		"a DNS-like query":  udpPayload([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")),
		"plain keepalive":   udpPayload(xlat.KeepaliveMagic[:]),
		"proof, truncated":  udpPayload(xlat.TokenKeepalive(uint64(secret)))[:20],
		"proof, other byte": udpPayload(append(xlat.TokenKeepalive(uint64(secret)), 0)),
	} {
		if _, err := fx.c.bind(fx.key(k, 40001), l4, nil); !errors.Is(err, errNoProof) || k.public.IsValid() {
			t.Errorf("%s: %v, bound to %v; want %v and unbound", name, err, k.public, errNoProof)
		}
	}
	if _, err := fx.c.bind(fx.key(k, 40001), udpPayload(xlat.TokenKeepalive(uint64(secret)^1)), nil); !errors.Is(err, errToken) || k.public.IsValid() {
		t.Fatalf("wrong secret: %v, bound to %v", err, k.public)
	}
	b, err := fx.c.bind(fx.key(k, 40002), udpPayload(xlat.TokenKeepalive(uint64(secret))), nil)
	if err != nil || !b.proof || b.flow != f || k.public != netip.AddrPortFrom(fx.public, 40002) {
		t.Fatalf("proof: %+v %v, bound to %v", b, err, k.public)
	}
	// The edge's next proof, sent before it heard of the binding.
	if b, err := fx.c.bind(fx.key(k, 40002), udpPayload(xlat.TokenKeepalive(uint64(secret))), nil); err != nil || !b.proof {
		t.Errorf("late proof from the bound port: %+v %v, want consumed", b, err)
	}
	if b, err := fx.c.bind(fx.key(k, 40002), udpPayload([]byte("data")), nil); err != nil || b.proof {
		t.Errorf("data from the bound port: %+v %v, want forwarded", b, err)
	}
	if n := fx.counts(); n["bound"] != 1 || n[errToken.Error()] != 1 || n[errNoProof.Error()] != 5 {
		t.Errorf("counters %v", n)
	}
}

// TestBindHeldUntilProof: a UDP carrier's packets that come before its
// proof are held (bounded per carrier), and go on when the proof binds
// the carrier, in order; those from another port of the address (a
// rogue's) are dropped and counted.
func TestBindHeldUntilProof(t *testing.T) {
	fx := newBindFixture(t)
	const secret = proto.BindToken(0xfeedface)
	_, k := fx.add(t, session.UDP, 1, secret)
	frame := func(b byte) []byte { return []byte{b} } // bind keeps frames as they are
	const edge, rogue = 40002, 40009
	held := []struct {
		from  uint16
		frame []byte
	}{{edge, frame(1)}, {rogue, frame(2)}, {edge, frame(3)}, {rogue, frame(4)}, {edge, frame(5)}}
	for i, h := range held {
		_, err := fx.c.bind(fx.key(k, h.from), udpPayload([]byte("x")), h.frame)
		want := errHeld
		if i >= earlyPerCarrier {
			want = errNoProof // the carrier's hold is full
		}
		if !errors.Is(err, want) {
			t.Errorf("packet %d: %v, want %v", i, err, want)
		}
	}
	b, err := fx.c.bind(fx.key(k, edge), udpPayload(xlat.TokenKeepalive(uint64(secret))), nil)
	if err != nil || !b.proof {
		t.Fatalf("proof: %+v %v", b, err)
	}
	var got []byte
	for _, p := range b.held {
		got = append(got, p.frame[0])
	}
	if string(got) != string([]byte{1, 3}) {
		t.Errorf("released %v, want the edge's port's packets 1 and 3 in order", got)
	}
	n := fx.counts()
	if n["bind-held"] != earlyPerCarrier || n["bind-held-other-port"] != 2 || n[errNoProof.Error()] != 1 {
		t.Errorf("counters %v", n)
	}
	if fx.c.early.count() != 0 {
		t.Errorf("%d packets still held", fx.c.early.count())
	}
}

// TestBindFailuresBounded: wrong tokens from one CGNAT address spend its
// budget; once spent, TCP binds from it are refused unchecked (the right
// ISN included, which bounds guessing a 32-bit ISN), while proofs are
// still checked (their 64-bit secret needs no bound, and refusing them
// would let a rogue hold back every carrier behind its address). The
// budget refills with time.
func TestBindFailuresBounded(t *testing.T) {
	fx := newBindFixture(t)
	const isn = 0xabcdef01
	_, kt := fx.add(t, session.TCP, 1, isn)
	for i := range bindFailBurst {
		if _, err := fx.c.bind(fx.key(kt, 40001), tcpSeq(uint32(i)), nil); !errors.Is(err, errToken) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := fx.c.bind(fx.key(kt, 40001), tcpSeq(isn), nil); !errors.Is(err, errLimited) || kt.public.IsValid() {
		t.Fatalf("the right ISN once the budget is spent: %v (bound to %v), want %v", err, kt.public, errLimited)
	}
	// A proof from the same address is still checked.
	const secret = proto.BindToken(0x0102030405060708)
	_, ku := fx.add(t, session.UDP, 2, secret)
	if _, err := fx.c.bind(fx.key(ku, 40002), udpPayload(xlat.TokenKeepalive(uint64(secret)+1)), nil); !errors.Is(err, errToken) {
		t.Errorf("wrong proof over budget: %v", err)
	}
	if _, err := fx.c.bind(fx.key(ku, 40002), udpPayload(xlat.TokenKeepalive(uint64(secret))), nil); err != nil {
		t.Errorf("right proof over budget: %v", err)
	}
	// Another address has its own budget (the carrier is not leased to
	// it: nothing to guess there).
	other := fx.key(kt, 40001)
	other.Src = netip.MustParseAddr("198.51.100.3")
	if _, err := fx.c.bind(other, tcpSeq(isn), nil); !errors.Is(err, errNoCarrier) {
		t.Errorf("another address: %v", err)
	}
	// A re-bind proof with the wrong secret spends the budget too.
	before := fx.c.bindBudget.next(fx.public)
	if _, err := fx.c.bind(fx.key(ku, 40003), udpPayload(xlat.TokenKeepalive(uint64(secret)+2)), nil); !errors.Is(err, errRebind) {
		t.Errorf("wrong re-bind proof: %v", err)
	}
	if !fx.c.bindBudget.next(fx.public).After(before) {
		t.Error("a wrong re-bind proof did not spend the budget")
	}
	fx.now = fx.now.Add(time.Duration(bindFailBurst+2) * bindFailEvery)
	if _, err := fx.c.bind(fx.key(kt, 40001), tcpSeq(isn), nil); err != nil || !kt.public.IsValid() {
		t.Errorf("the right ISN once the budget refilled: %v", err)
	}
	if n := fx.counts(); n[errLimited.Error()] != 1 || n[errToken.Error()] != bindFailBurst+1 || n[errRebind.Error()] != 1 {
		t.Errorf("counters %v", n)
	}
}

// TestBindICMPRefused: nothing binds an ICMP echo carrier (the relay's
// datapath hands none over; see SPEC), and the refusal is counted.
func TestBindICMPRefused(t *testing.T) {
	fx := newBindFixture(t)
	_, k := fx.add(t, session.ICMP, 1, 5)
	if _, err := fx.c.bind(fx.key(k, 0), make([]byte, 8), nil); !errors.Is(err, errProto) || k.public.IsValid() {
		t.Errorf("icmp: %v", err)
	}
}
