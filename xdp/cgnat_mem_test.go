package xdp

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// memlock is the kernel's account of a map's memory (fdinfo "memlock").
func memlock(tb testing.TB, m *ebpf.Map) uint64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no memlock in fdinfo")
	return 0
}

// TestCGNATMemoryPerMapping: every map the CGNAT loads, as the kernel
// accounts them, sized for 1M mappings with endpoint-independent
// filtering (the default): a /16 of subscribers, 28 pool addresses
// (24576 block ports each, 688k a protocol: 1M mappings over TCP and UDP
// with blocks three quarters full), stay within 128 bytes a mapping
// (xdp/README.md, CGNAT). The filter permissions are counted too: a
// preallocated hash holds its memory whether or not a mode uses it (the
// CGNAT bench found cg_perms sized for every mapping in the default
// mode, 88 bytes a mapping that nothing used), and NAT64's maps, which
// cost (next to) nothing with NAT64 off.
func TestCGNATMemoryPerMapping(t *testing.T) {
	priv.Require(t)
	const mappings = 1 << 20
	c := cgnat.Config{Inside: netip.MustParsePrefix("100.64.0.0/16"), Gateway: netip.MustParseAddr("100.64.0.1"),
		PoolFirst: netip.MustParseAddr("198.51.100.128"), PoolAddrs: 28, PortLo: 40960, BlockBits: 9, Blocks: 48}
	d, err := Load(xlattest.Config(xlattest.RelayAddr), Options{CGNAT: c, CGNATMappings: mappings})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var total uint64
	for name, m := range map[string]*ebpf.Map{"cg_table": d.objs.CgTable, "cg_bmeta": d.objs.CgBmeta,
		"cg_mappings": d.objs.CgMappings, "cg_slots": d.objs.CgSlots,
		"cg_blocks": d.objs.CgBlocks, "cg_subs": d.objs.CgSubs, "cg_perms": d.objs.CgPerms,
		"cg_mappings6": d.objs.CgMappings6, "cg_slots6": d.objs.CgSlots6} {
		n := memlock(t, m)
		t.Logf("%-12s %10d bytes  %6.1f a mapping", name, n, float64(n)/mappings)
		total += n
	}
	per := float64(total) / mappings
	t.Logf("total %d bytes: %.1f a mapping at 1M mappings", total, per)
	if per > 128 {
		t.Errorf("%.1f bytes a mapping, target 128", per)
	}
	// The dependent modes do need the permissions: one for each
	// (mapping, remote), in a hash as large as the mappings'.
	c.Filter = cgnat.ADF
	a, err := Load(xlattest.Config(xlattest.RelayAddr), Options{CGNAT: c, CGNATMappings: mappings})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := memlock(t, a.objs.CgPerms); n < 64*mappings {
		t.Errorf("address-dependent filtering: cg_perms %d bytes, too small for %d permissions", n, mappings)
	} else {
		t.Logf("address-dependent filtering: cg_perms %.1f more a mapping", float64(n)/mappings)
	}
}

// TestCGNATPermsWithNAT64: with NAT64 on, cg_perms has room for the
// permissions of NAT44's and NAT64's mappings together (two hashes of
// max_mappings each record theirs in it) under a dependent filter, and
// stays one entry under endpoint-independent filtering.
func TestCGNATPermsWithNAT64(t *testing.T) {
	priv.Require(t)
	const mappings = 1 << 16
	c := cgnat.Config{Inside: netip.MustParsePrefix("100.64.0.0/16"), Gateway: netip.MustParseAddr("100.64.0.1"),
		PoolFirst: netip.MustParseAddr("198.51.100.128"), PoolAddrs: 4, PortLo: 40960, BlockBits: 9, Blocks: 48,
		Inside6: netip.MustParsePrefix("2001:db8:64::/56"), Filter: cgnat.APDF}
	d, err := Load(xlattest.Config(xlattest.RelayAddr), Options{CGNAT: c, CGNATMappings: mappings})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.objs.CgPerms.MaxEntries(); got != 2*mappings {
		t.Errorf("NAT64 with address-and-port-dependent filtering: cg_perms holds %d, want %d", got, 2*mappings)
	}
	c.Filter = cgnat.EIF
	e, err := Load(xlattest.Config(xlattest.RelayAddr), Options{CGNAT: c, CGNATMappings: mappings})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.objs.CgPerms.MaxEntries(); got != 1 {
		t.Errorf("NAT64 with endpoint-independent filtering: cg_perms holds %d, want 1", got)
	}
}
