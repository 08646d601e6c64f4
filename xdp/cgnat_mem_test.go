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

// TestCGNATMemoryPerMapping: the CGNAT's maps, as the kernel accounts
// them, sized for 1M mappings with endpoint-independent filtering: a /16
// of subscribers, 28 pool addresses (24576 block ports each, 688k a
// protocol: 1M mappings over TCP and UDP with blocks three quarters
// full), stay within 128 bytes a mapping (xdp/README.md, CGNAT).
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
	for name, m := range map[string]*ebpf.Map{"cg_mappings": d.objs.CgMappings, "cg_slots": d.objs.CgSlots,
		"cg_blocks": d.objs.CgBlocks, "cg_subs": d.objs.CgSubs} {
		n := memlock(t, m)
		t.Logf("%-12s %10d bytes  %6.1f a mapping", name, n, float64(n)/mappings)
		total += n
	}
	per := float64(total) / mappings
	t.Logf("total %d bytes: %.1f a mapping at 1M mappings (filter permissions, address-dependent modes only: %.1f more a permission)",
		total, per, float64(memlock(t, d.objs.CgPerms))/mappings)
	if per > 128 {
		t.Errorf("%.1f bytes a mapping, target 128", per)
	}
}
