package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/test/priv"
)

// TestNAT64PinnedAcrossReload: a relay restart (a new Load on the pinned
// maps) keeps the NAT64 mappings (cg_mappings6 and the interface IDs in
// cg_slots6 are pinned with the rest): the second load translates an
// established IPv6 subscriber's mapping both ways as the first did, and
// reads the /64's grant and the mapping back as the agent does;
// ReleaseMapping then ends it (its port back to the block, its answers
// dropped).
func TestNAT64PinnedAcrossReload(t *testing.T) {
	priv.Require(t)
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	c := cgnattest.Config(cgnat.EIF)
	opts := Options{PinPath: dir, NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 1 << 12}
	xc := xlattest.Config(xlattest.RelayAddr)
	sub64 := cgnattest.Sub6(cgnattest.A6)
	flow := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.A6, SPort: 5000, Dst: xlat.Embed(xlat.WKP, cgnattest.R4), DPort: 53})
	pub := cgnattest.PortLo + uint16(c.BlockSize())
	back := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4, SPort: 53, Dst: cgnattest.Pub1, DPort: pub})
	d1, err := Load(xc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d1.SetFIB(false), d1.GrantBlock(sub64, c.BlockID(0, 1))); err != nil {
		t.Fatal(err)
	}
	v1, out1 := runRole(t, d1, xlat.RoleRelaySub, flow)
	w1, in1 := runRole(t, d1, xlat.RoleRelayExt, back)
	if v1 != xlat.Pass || w1 != xlat.Pass || len(out1) != len(flow)-20 || len(in1) != len(back)+20 {
		t.Fatalf("before the reload: %v %d bytes out, %v %d bytes back", v1, len(out1), w1, len(in1))
	}
	if p := binary.BigEndian.Uint16(out1[34:]); p != pub {
		t.Fatalf("mapped to port %d, want %d", p, pub)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := Load(xc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	_, out2 := runRole(t, d2, xlat.RoleRelaySub, flow)
	_, in2 := runRole(t, d2, xlat.RoleRelayExt, back)
	if !bytes.Equal(out1, out2) || !bytes.Equal(in1, in2) {
		t.Fatal("the NAT64 mapping translates otherwise after the reload")
	}
	k := cgnat.Key{Addr: cgnattest.A6, Port: 5000, Proto: 17}
	g, err := d2.CGNATGrants()
	if err != nil || len(g[sub64].Blocks) != 1 || g[sub64].Blocks[0] != c.BlockID(0, 1) {
		t.Fatalf("grants read back: %v %v", g, err)
	}
	m, err := d2.CGNATMappings()
	if err != nil || m[k] != (cgnat.Out{Addr: cgnattest.Pub1, Port: pub}) {
		t.Fatalf("mappings read back: %v %v", m, err)
	}
	sl, err := d2.CGNATSlots()
	if off, _ := c.PoolPort(cgnattest.Pub1, pub); err != nil || sl[cgnat.Slot{Plane: 1, Off: off}].Addr != cgnattest.A6 {
		t.Fatalf("slots read back: %v %v", sl, err)
	}
	if err := d2.ReleaseMapping(k); err != nil {
		t.Fatal(err)
	}
	if used, err := d2.CGNATBlockUsed(c.BlockID(0, 1)); err != nil || used[1] != 0 {
		t.Fatalf("block after the release: %v %v", used, err)
	}
	if v, _ := runRole(t, d2, xlat.RoleRelayExt, back); v != xlat.Drop {
		t.Fatalf("an answer to the released mapping: %v, want dropped", v)
	}
}

// TestNAT64BlockEventNamesTheSlash64: a /64's block at the warn level
// tells the agent which /64 (the event carries the subscriber's record
// index, read back as its first address).
func TestNAT64BlockEventNamesTheSlash64(t *testing.T) {
	h := newCGHarness(t, cgnat.ADF) // 64-port blocks: warn at 48
	for i := range int(h.c.WarnAt()) {
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.A6b, SPort: uint16(100 + i), Dst: xlat.Embed(cgnattest.NSP, cgnattest.R4), DPort: 53})
		if _, err := h.compare(xlat.RoleRelaySub, in); err != nil {
			t.Fatal(err)
		}
	}
	h.events.SetDeadline(time.Now().Add(time.Second))
	ev, err := h.events.Read()
	if err != nil || ev.Sub != cgnattest.Sub6(cgnattest.A6) || ev.Used != h.c.WarnAt() || ev.Plane != 1 {
		t.Fatalf("event %+v (%v), want /64 %v at %d UDP ports", ev, err, cgnattest.Sub6(cgnattest.A6), h.c.WarnAt())
	}
	h.nevents++
	h.compareState(t)
}

// TestNAT64SlotsReadInBatches: CGNATSlots reads NAT64 slots' interface
// IDs one by one when they are few and the whole cg_slots6 in batches
// when they are many (the sweep reads the slots every 10 s); both ways
// every slot's host address is the model's. 300 hosts of A6's /64 each
// map a UDP port (past the 64 read one by one), beside NAT44 mappings.
func TestNAT64SlotsReadInBatches(t *testing.T) {
	h := newCGHarness(t, cgnat.EIF) // 512-port blocks
	send := func(src netip.Addr, port uint16) {
		t.Helper()
		dst := cgnattest.R4
		if src.Is6() {
			dst = xlat.Embed(xlat.WKP, cgnattest.R4)
		}
		in := xlattest.Build(xlattest.Spec{Proto: 17, Src: src, SPort: port, Dst: dst, DPort: 53})
		if _, err := h.compare(xlat.RoleRelaySub, in); err != nil {
			t.Fatal(err)
		}
	}
	base := cgnattest.A6.As16()
	for i := range 300 {
		b := base
		binary.BigEndian.PutUint32(b[12:], 0x1000+uint32(i))
		send(netip.AddrFrom16(b), 6000)
		if i < 3 {
			send(cgnattest.SubA, uint16(7000+i))
		}
		if i == 10 || i == 299 {
			h.compareState(t) // 11 NAT64 slots: read one by one; 300: in batches
		}
	}
	sl, err := h.d.CGNATSlots()
	if err != nil {
		t.Fatal(err)
	}
	var v6 int
	for _, in := range sl {
		if in.Addr.Is6() {
			v6++
		}
	}
	if v6 != 300 || len(sl) != 303 {
		t.Fatalf("%d slots, %d of them NAT64's; want 303, 300", len(sl), v6)
	}
}
