package xdp

import (
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// neighMsg is a neighbour message as the kernel sends it: an ndmsg, the
// address and, when mac is set, the link-layer address.
func neighMsg(typ uint16, family uint8, ifindex int, state uint16, ip netip.Addr, mac net.HardwareAddr) syscall.NetlinkMessage {
	nd := netlink.Ndmsg{Family: family, Index: uint32(ifindex), State: state}
	data := append([]byte{}, nd.Serialize()...)
	data = append(data, nl.NewRtAttr(netlink.NDA_DST, ip.AsSlice()).Serialize()...)
	if mac != nil {
		data = append(data, nl.NewRtAttr(netlink.NDA_LLADDR, mac).Serialize()...)
	}
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: data}
}

// TestNeighbourMessages: which rtnetlink messages make the route watcher
// bump the next-hop caches. A neighbour moving between valid states with
// its MAC unchanged does not (the churn of a link with many neighbours);
// a new MAC, a neighbour turned unusable, one never seen, anything that
// is not a neighbour message, and a message that does not parse do. A
// deleted neighbour does not, and comes back without a bump when its MAC
// is the same. Bridge forwarding entries (AF_BRIDGE) do not.
func TestNeighbourMessages(t *testing.T) {
	gw := netip.MustParseAddr("100.64.0.1")
	gw6 := netip.MustParseAddr("2001:db8::1")
	const v4, v6 = unix.AF_INET, unix.AF_INET6
	ns := neighbours{}
	for i, c := range []struct {
		what string
		m    syscall.NetlinkMessage
		want bool
	}{
		{"first sight", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC1), true},
		{"reachable to stale", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_STALE, gw, gwMAC1), false},
		{"stale to delay", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_DELAY, gw, gwMAC1), false},
		{"probe", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_PROBE, gw, gwMAC1), false},
		{"reachable again", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC1), false},
		{"another MAC", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC2), true},
		{"failed", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_FAILED, gw, nil), true},
		{"still failed", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_INCOMPLETE, gw, nil), false},
		{"resolved, the same MAC", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC2), false},
		{"deleted", neighMsg(unix.RTM_DELNEIGH, v4, 3, netlink.NUD_STALE, gw, gwMAC2), false},
		{"back, the same MAC", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC2), false},
		{"deleted again", neighMsg(unix.RTM_DELNEIGH, v4, 3, netlink.NUD_STALE, gw, gwMAC2), false},
		{"back, another MAC", neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC3), true},
		{"the same address on another link", neighMsg(unix.RTM_NEWNEIGH, v4, 4, netlink.NUD_REACHABLE, gw, gwMAC3), true},
		{"IPv6, first sight", neighMsg(unix.RTM_NEWNEIGH, v6, 3, netlink.NUD_REACHABLE, gw6, gwMAC1), true},
		{"IPv6 stale", neighMsg(unix.RTM_NEWNEIGH, v6, 3, netlink.NUD_STALE, gw6, gwMAC1), false},
		{"permanent, the same MAC", neighMsg(unix.RTM_NEWNEIGH, v6, 3, netlink.NUD_PERMANENT, gw6, gwMAC1), false},
		{"bridge forwarding entry", neighMsg(unix.RTM_NEWNEIGH, unix.AF_BRIDGE, 3, netlink.NUD_REACHABLE, gw, gwMAC1), false},
		{"a route", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWROUTE}}, true},
		{"a link", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWLINK}}, true},
		{"short", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWNEIGH}, Data: []byte{2, 0, 0}}, true},
		{"no address", syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWNEIGH}, Data: (&netlink.Ndmsg{Family: v4}).Serialize()}, true},
	} {
		if got := ns.stale(c.m); got != c.want {
			t.Errorf("%d %s: stale %v, want %v", i, c.what, got, c.want)
		}
	}
	// A batch bumps when one of its messages does, and records them all.
	batch := []syscall.NetlinkMessage{
		neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_STALE, gw, gwMAC3),
		neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_REACHABLE, gw, gwMAC1),
		neighMsg(unix.RTM_NEWNEIGH, v4, 3, netlink.NUD_STALE, gw, gwMAC1),
	}
	if !ns.anyStale(batch) || ns[neighKey{3, gw}].mac != gwMAC1.String() {
		t.Errorf("a batch with a new MAC in its middle: not stale, or %+v recorded", ns[neighKey{3, gw}])
	}
	if ns.anyStale(batch[2:]) {
		t.Error("a batch of one state change: stale")
	}
}

// TestNeighbourMemoryBound: the record forgets all past maxNeighbours
// rather than grow (each then bumps once more).
func TestNeighbourMemoryBound(t *testing.T) {
	ns := neighbours{}
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range maxNeighbours + 10 {
		a := base
		a[1], a[2], a[3] = byte(i>>16), byte(i>>8), byte(i)
		ns.stale(neighMsg(unix.RTM_NEWNEIGH, unix.AF_INET, 3, netlink.NUD_REACHABLE, netip.AddrFrom4(a), gwMAC1))
	}
	if len(ns) > maxNeighbours {
		t.Errorf("%d neighbours recorded, bound %d", len(ns), maxNeighbours)
	}
}

// FuzzNeighbourMessage: any bytes as a neighbour message's body (new or
// deleted) are decided on without a panic (netlink's parser reads the
// ndmsg header without a bound: stale checks the length first).
func FuzzNeighbourMessage(f *testing.F) {
	f.Add(neighMsg(unix.RTM_NEWNEIGH, unix.AF_INET, 3, netlink.NUD_STALE, netip.MustParseAddr("100.64.0.1"), gwMAC1).Data)
	f.Add(neighMsg(unix.RTM_DELNEIGH, unix.AF_INET6, 3, netlink.NUD_STALE, netip.MustParseAddr("2001:db8::1"), nil).Data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ns := neighbours{}
		for _, typ := range []uint16{unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH} {
			ns.stale(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: data})
		}
	})
}
