package xlat_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

func configFor(r xlat.Role) xlat.Config {
	if r == xlat.RoleRelayExt {
		return xlattest.Config(xlattest.RelayAddr)
	}
	return xlattest.Config(xlattest.EdgeWAN)
}

// Every fixture: the model's verdict, reason and bytes are the expected
// ones, built independently with gopacket, and every output checksum
// verifies.
func TestFixtures(t *testing.T) {
	world := xlattest.World()
	for _, f := range xlattest.Fixtures() {
		t.Run(f.Name, func(t *testing.T) {
			cfg := configFor(f.Role)
			in := append([]byte(nil), f.In...)
			res := xlat.Process(f.Role, &cfg, world, nil, in)
			if !bytes.Equal(in, f.In) {
				t.Fatal("Process modified its input")
			}
			if res.Verdict != f.Verdict || res.Reason != f.Reason {
				t.Fatalf("got %v/%v, want %v/%v", res.Verdict, res.Reason, f.Verdict, f.Reason)
			}
			want := f.Out
			if want == nil {
				want = f.In
			}
			if !bytes.Equal(res.Out, want) {
				t.Fatalf("output differs\ngot  %s\nwant %s", hex.EncodeToString(res.Out), hex.EncodeToString(want))
			}
			if f.Out != nil {
				if err := xlattest.VerifyChecksums(res.Out); err != nil {
					t.Fatal(err)
				}
				if !res.Hit {
					t.Error("translated without a hit")
				}
			}
			if res.Reason.ToAgent() != (res.Miss != nil) {
				t.Errorf("miss bytes %v for reason %v", res.Miss != nil, res.Reason)
			}
		})
	}
}

// A runt frame (which BPF_PROG_RUN refuses, so only the model sees it).
func TestRuntFrame(t *testing.T) {
	cfg := configFor(xlat.RoleEdgeLAN)
	res := xlat.Process(xlat.RoleEdgeLAN, &cfg, xlattest.World(), nil, make([]byte, 10))
	if res.Verdict != xlat.Pass || res.Reason != xlat.ReasonPassNotIP {
		t.Fatalf("runt: %v/%v", res.Verdict, res.Reason)
	}
}

// Translating there and back restores the flow's packet (TTL aside).
func TestRoundTrip(t *testing.T) {
	world := xlattest.World()
	edge, relay := configFor(xlat.RoleEdgeLAN), configFor(xlat.RoleRelayExt)
	in := xlattest.Build(xlattest.Spec{Proto: 6, Src: xlattest.SiteHost, SPort: 40000, Dst: xlattest.Remote6, DPort: 443, TTL: 64, Payload: []byte("round trip")})
	c := xlat.Process(xlat.RoleEdgeLAN, &edge, world, nil, in)
	carrier := c.Out
	// The CGNAT rewrites the source to its public address and port.
	nat := xlattest.Build(xlattest.Spec{Proto: 6, Src: xlattest.CGNATPub, SPort: 20001, Dst: xlattest.RelayAddr, DPort: 30000, TTL: 63, Payload: []byte("round trip")})
	if len(carrier) != len(in)-20 || len(nat) != len(carrier) {
		t.Fatalf("carrier is %d bytes for a %d-byte packet", len(carrier), len(in))
	}
	back := xlat.Process(xlat.RoleRelayExt, &relay, world, nil, nat)
	want := xlattest.Build(xlattest.Spec{Proto: 6, Src: xlattest.SiteHost, SPort: 40000, Dst: xlattest.Remote6, DPort: 443, TTL: 62, Payload: []byte("round trip")})
	if !bytes.Equal(back.Out, want) {
		t.Fatalf("round trip:\ngot  %x\nwant %x", back.Out, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []xlat.Config{
		{PortLo: 10, PortHi: 5},
		{PortLo: 0, PortHi: 5},
		{CarrierAddr: xlattest.SiteHost},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := (xlat.Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

// TestTCPEnd: a translated FIN or RST marks its entry, in either
// direction; any other segment, and an untranslated one, marks nothing.
func TestTCPEnd(t *testing.T) {
	world := xlattest.World()
	want := map[string]uint16{"tcp/edge-lan/fin-to-carrier": xlat.EndFIN, "tcp/relay/carrier-rst-to-v6": xlat.EndRST}
	seen := 0
	for _, f := range xlattest.Fixtures() {
		cfg := configFor(f.Role)
		res := xlat.Process(f.Role, &cfg, world, nil, append([]byte(nil), f.In...))
		if w, ok := want[f.Name]; ok {
			seen++
			if res.TCPEnd != w || !res.Hit {
				t.Errorf("%s: TCPEnd %#x (hit %v), want %#x", f.Name, res.TCPEnd, res.Hit, w)
			}
		} else if res.TCPEnd != 0 {
			t.Errorf("%s: TCPEnd %#x, want none", f.Name, res.TCPEnd)
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the %d FIN/RST fixtures found", seen, len(want))
	}
}
