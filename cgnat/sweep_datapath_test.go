package cgnat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
	"github.com/unmap-dev/unmap/xdp"
)

// TestSweepTimeoutsOnDatapath: the sweep against the real datapath
// (programs run with BPF_PROG_RUN), where it reads the mappings and the
// slots' state bits into its reused buffers rather than the maps the
// fakes give (TestAgentTimeouts): 5 minutes idle, an established TCP
// mapping (SYN out, SYN-ACK in) and an explicit UDP one stay, a TCP one
// that saw only its SYN (transitory, 4 min) and a UDP one (2 min) end;
// a second sweep, the buffers reused, ends nothing more. Both ways the
// sweep reads the slots: one lookup each for the few it needs, and the
// whole array (forced: wholeSlots).
func TestSweepTimeoutsOnDatapath(t *testing.T) {
	priv.Require(t)
	t.Run("lookups", func(t *testing.T) { sweepTimeoutsOnDatapath(t, false) })
	t.Run("whole-array", func(t *testing.T) { sweepTimeoutsOnDatapath(t, true) })
}

// wholeSlots is the datapath with no slots to count, so the sweep reads
// the whole array however few slots it needs.
type wholeSlots struct{ *xdp.Datapath }

func (wholeSlots) CGNATSlotCount() int { return 0 }

func sweepTimeoutsOnDatapath(t *testing.T, whole bool) {
	s := testSettings(t, false)
	d, err := xdp.Load(xlattest.Config(xlattest.RelayAddr), xdp.Options{CGNAT: s.Datapath, CGNATMappings: 1 << 12, NoMissLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	blog, err := OpenLog(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	clk := &clock{time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)}
	var dp Datapath = d
	if whole {
		dp = wholeSlots{d}
	}
	a, err := NewAgent(s, dp, blog, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	sub, R := netip.MustParseAddr("100.64.0.10"), xlattest.Remote4
	run := func(role xlat.Role, sp xlattest.Spec) xlat.Verdict {
		t.Helper()
		pkt := xlattest.Build(sp)
		ret, err := d.Program(role).Run(&ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)+64)})
		if err != nil {
			t.Fatal(err)
		}
		return xlat.Verdict(ret)
	}
	out := func(sp xlattest.Spec) cgnat.Key {
		t.Helper()
		if run(xlat.RoleRelaySub, sp) != xlat.Pass {
			if err := a.NoBlock(sub); err != nil {
				t.Fatal(err)
			}
			if v := run(xlat.RoleRelaySub, sp); v != xlat.Pass {
				t.Fatalf("%+v after a grant: %v", sp, v)
			}
		}
		return cgnat.Key{Addr: sp.Src, Port: sp.SPort, Proto: sp.Proto}
	}
	est := out(xlattest.Spec{Proto: 6, Src: sub, SPort: 6000, Dst: R, DPort: 443, TCPFlags: 0x02})
	o, ok, err := d.CGNATMapping(est)
	if err != nil || !ok {
		t.Fatalf("no mapping for %+v: %v", est, err)
	}
	if v := run(xlat.RoleRelayExt, xlattest.Spec{Proto: 6, Src: R, SPort: 443, Dst: o.Addr, DPort: o.Port, TCPFlags: 0x12}); v != xlat.Pass {
		t.Fatalf("SYN-ACK in: %v", v)
	}
	trans := out(xlattest.Spec{Proto: 6, Src: sub, SPort: 6001, Dst: R, DPort: 443, TCPFlags: 0x02})
	udp := out(xlattest.Spec{Proto: 17, Src: sub, SPort: 5000, Dst: R, DPort: 53, Payload: []byte("x")})
	ex := cgnat.Key{Addr: sub, Port: 7000, Proto: 17}
	pub, first := s.Datapath.BlockAt(a.Held(sub)[0])
	if err := d.MapExplicit(ex, pub, first+uint16(s.Datapath.BlockSize()-1)); err != nil {
		t.Fatal(err)
	}
	clk.step(5 * time.Minute)
	for sweep := range 2 {
		if err := a.Sweep(); err != nil {
			t.Fatal(err)
		}
		m, err := d.CGNATMappings()
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[cgnat.Key]bool{est: true, ex: true, trans: false, udp: false} {
			if _, ok := m[k]; ok != want {
				t.Errorf("sweep %d: mapping %+v there %v, want %v", sweep, k, ok, want)
			}
		}
		if len(m) != 2 {
			t.Errorf("sweep %d: %d mappings left, want 2", sweep, len(m))
		}
	}
	if st := a.Status(); st["expired"] != 2 {
		t.Errorf("%d expired, want 2", st["expired"])
	}
}
