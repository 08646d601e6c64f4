package xdp

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/bpffs"
	"github.com/unmap-dev/unmap/test/priv"
)

// TestCGNATTableSpill: a table far too small for its mappings (sized for
// 8: four buckets, 16 ways) puts the rest in the spill hash. Every one of
// 200 new UDP flows gets a distinct public port; its next packet, and a
// reply to that port, find the same mapping whether it sits in a way or
// in the spill (so the datapath reads the spill of exactly the buckets
// whose meta word counts keys there); the agent reads all 200 back, and
// the buckets' counts add up to the spill's entries. Released one by
// one (the agent's CAS on a way, or the spill's delete and count), the
// table, the spill and the counts end empty, and the same flows get
// mappings again. Then the agent's lock a killed agent left on a bucket
// is cleared by the next load (the datapath could not put a key in that
// bucket while it stood).
func TestCGNATTableSpill(t *testing.T) {
	priv.Require(t)
	dir := filepath.Join(bpffs.ForTest(t), "unmap", "relay")
	c := cgnattest.Config(cgnat.EIF)
	opts := Options{PinPath: dir, NoMissLimit: true, NoRefuseLimit: true, CGNAT: c, CGNATMappings: 8}
	d, err := Load(xlattest.Config(xlattest.RelayAddr), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close() }()
	if err := d.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	for j := range 4 {
		if err := d.GrantBlock(cgnattest.SubA, c.BlockID(0, j)); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.objs.CgTable.MaxEntries(); got != 4 {
		t.Fatalf("table sized %d buckets for 8 mappings, want 4", got)
	}
	run := func(role xlat.Role, in []byte) []byte {
		t.Helper()
		v, out := runRole(t, d, role, in)
		if v != xlat.Pass {
			rc, _ := d.ReasonCounts()
			t.Fatalf("%v: %v %v", role, v, rc)
		}
		return out
	}
	const flows = 200
	flow := func(i int) []byte {
		return xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: uint16(10000 + i), Dst: cgnattest.R4, DPort: 53})
	}
	pubPort := func(out []byte) uint16 { return binary.BigEndian.Uint16(out[34:]) }
	round := func() {
		t.Helper()
		ports := map[uint16]int{}
		for i := range flows {
			p := pubPort(run(xlat.RoleRelaySub, flow(i)))
			if j, dup := ports[p]; dup {
				t.Fatalf("flows %d and %d both got port %d", j, i, p)
			}
			ports[p] = i
		}
		for p, i := range ports {
			if q := pubPort(run(xlat.RoleRelaySub, flow(i))); q != p {
				t.Fatalf("flow %d: port %d, then %d", i, p, q)
			}
			back := run(xlat.RoleRelayExt, xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.R4, SPort: 53, Dst: cgnattest.Pub1, DPort: p}))
			if got := binary.BigEndian.Uint16(back[36:]); got != uint16(10000+i) {
				t.Fatalf("reply to port %d reached port %d, want %d", p, got, 10000+i)
			}
		}
		m, err := d.CGNATMappings()
		if err != nil || len(m) != flows {
			t.Fatalf("the agent reads %d mappings (%v), want %d", len(m), err, flows)
		}
		spilled, counted := 0, 0
		var k datapathCgKey
		var v datapathCgOut
		for it := d.objs.CgMappings.Iterate(); it.Next(&k, &v); {
			spilled++
		}
		for b := range uint32(4) {
			counted += int(atomic.LoadUint32(d.cgt.metaWord(b)) / cgMetaSpill)
		}
		if spilled != flows-16 || counted != spilled {
			t.Fatalf("%d in the spill, %d counted in the buckets, want %d both", spilled, counted, flows-16)
		}
	}
	round()
	for i := range flows {
		if err := d.ReleaseMapping(cgnat.Key{Addr: cgnattest.SubA, Port: uint16(10000 + i), Proto: 17}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := d.cgt.count(); err != nil || n != 0 {
		t.Fatalf("%d mappings left after all were released (%v)", n, err)
	}
	if m, err := d.CGNATMappings(); err != nil || len(m) != 0 {
		t.Fatalf("the agent reads %d mappings after all were released (%v)", len(m), err)
	}
	round()

	// A lock left by a killed agent, on the bucket of a new key.
	k := datapathCgKey{Addr: net32(cgnattest.SubA), Port: hport(20000), Proto: 17}
	atomic.OrUint32(d.cgt.metaWord(d.cgt.bucket(cgKeyWord(k))), cgMetaAgent)
	in := &ebpf.RunOptions{Data: xlattest.Build(xlattest.Spec{Proto: 17, Src: cgnattest.SubA, SPort: 20000, Dst: cgnattest.R4, DPort: 53})}
	in.DataOut = make([]byte, len(in.Data)+64)
	if ret, err := d.Program(xlat.RoleRelaySub).Run(in); err != nil || xlat.Verdict(ret) != xlat.Drop {
		t.Fatalf("a new key in a bucket the agent holds: %v %v, want a drop", xlat.Verdict(ret), err)
	}
	if rc, err := d.ReasonCounts(); err != nil || rc["drop-cgnat-busy"] != 1 {
		t.Fatalf("reasons %v (%v), want one drop-cgnat-busy", rc, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Load(xlattest.Config(xlattest.RelayAddr), opts); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFIB(false); err != nil {
		t.Fatal(err)
	}
	run(xlat.RoleRelaySub, in.Data)
	if _, ok, err := d.CGNATMapping(cgnat.Key{Addr: cgnattest.SubA, Port: 20000, Proto: 17}); err != nil || !ok {
		t.Fatalf("after the reload the new key has no mapping (%v)", err)
	}
	if n, err := d.cgt.count(); err != nil || n != flows+1 {
		t.Fatalf("%d mappings after the reload, want %d kept and one more (%v)", n, flows+1, err)
	}
}

// TestCGNATTableSpread: the table's hash spreads keys as regular as a
// CGNAT's (a /16 of subscribers' addresses with sequential ports and the
// three protocols; one subscriber's 20000 consecutive ports) over the
// buckets as random placement would, for every one of 200 random seeds:
// 20000 keys in 16384 buckets of four ways leave ~170 keys over a full
// bucket at random; the worst seed may not leave more than 400. A plain
// multiply-shift of the key word (the hash first written) left up to
// 7800 for one seed in six.
func TestCGNATTableSpread(t *testing.T) {
	sets := map[string][]uint64{}
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{100, 64, byte(i >> 16), byte(i >> 8)})
		sets["subscribers"] = append(sets["subscribers"], cgKeyWord(datapathCgKey{Addr: net32(a), Port: hport(uint16(i)), Proto: [3]uint8{6, 17, 1}[i%3]}))
		sets["one subscriber"] = append(sets["one subscriber"], cgKeyWord(datapathCgKey{Addr: net32(cgnattest.SubA), Port: hport(uint16(1024 + i)), Proto: 17}))
	}
	const bits = 14
	for name, keys := range sets {
		worst := worstOverflow(t, bits, cgWays, len(keys), func(seed tableSeed, i int) uint32 {
			return cgTableHash(seed, bits, keys[i])
		})
		t.Logf("%s: at most %d of %d keys over a full bucket", name, worst, len(keys))
		if worst > 400 {
			t.Errorf("%s: a seed left %d of %d keys over a full bucket", name, worst, len(keys))
		}
	}
}
