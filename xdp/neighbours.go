package xdp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel sends a neighbour message on every state change: a
// neighbour the XDP path uses goes from reachable to stale within a
// minute (XDP's traffic never confirms it), the stack's probes move it
// on, and the garbage collector deletes idle ones, so a relay with
// thousands of subscribers on a link hears hundreds a second. A FIB
// lookup answers the same MAC in each valid state, so those messages
// leave every cached next hop right; the watcher bumps on the ones that
// can make one wrong: a neighbour's MAC changed, a neighbour it used
// turned unusable, or one it knows nothing of (its MAC before is
// unknown).

// nudValid are the states in which bpf_fib_lookup answers a neighbour's
// MAC (the kernel's NUD_VALID).
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE |
	unix.NUD_PROBE | unix.NUD_STALE | unix.NUD_DELAY

// maxNeighbours bounds what the watcher remembers; past it, it forgets
// all (each neighbour's next message then bumps once).
const maxNeighbours = 1 << 16

type neighKey struct {
	ifindex int
	ip      netip.Addr
}

type neighState struct {
	mac    string
	usable bool
}

// neighbours is the watcher's record of the neighbours' MACs (one
// watcher goroutine uses it: no lock).
type neighbours map[neighKey]neighState

// stale reports whether message m can make a cached next hop wrong:
// everything but a neighbour message that leaves the neighbour's MAC
// and usability as they were (or is not about an IP neighbour: a
// bridge's forwarding entries come the same way). A neighbour deleted
// (garbage collected, mostly) is kept as unusable with its MAC, and not
// bumped for: the cache may send to that MAC until its expiry
// (NextHopTTL), then the FIB lookup fails and the stack resolves the
// address again; a new MAC then bumps.
func (ns neighbours) stale(m syscall.NetlinkMessage) bool {
	t := m.Header.Type
	if t != unix.RTM_NEWNEIGH && t != unix.RTM_DELNEIGH {
		return true
	}
	n, ok := parseNeigh(m.Data)
	if !ok {
		return true // not what the kernel sends: assume the worst
	}
	if n.family != unix.AF_INET && n.family != unix.AF_INET6 {
		return false
	}
	k := neighKey{n.ifindex, n.ip}
	old, known := ns[k]
	now := neighState{mac: n.mac, usable: t == unix.RTM_NEWNEIGH && n.state&nudValid != 0}
	if now.mac == "" {
		now.mac = old.mac // an incomplete or deleted entry names none
	}
	if !known && len(ns) >= maxNeighbours {
		clear(ns)
	}
	ns[k] = now
	switch {
	case t == unix.RTM_DELNEIGH:
		return false
	case !now.usable:
		return !known || old.usable
	default:
		return !known || old.mac != now.mac
	}
}

// anyStale reports whether one of a batch's messages is stale (each is
// recorded: the whole batch is read).
func (ns neighbours) anyStale(msgs []syscall.NetlinkMessage) bool {
	stale := false
	for _, m := range msgs {
		if ns.stale(m) {
			stale = true
		}
	}
	return stale
}

// neigh is what a neighbour message says of the neighbour.
type neigh struct {
	family  uint8
	ifindex int
	state   uint16
	ip      netip.Addr // unset for a family other than IPv4 and IPv6
	mac     string     // "" when the message names none
}

// parseNeigh reads a neighbour message's body (struct ndmsg, then its
// attributes, each bounded by mdlayher/netlink's decoder): false if it
// is short, its attributes do not parse, or an IP neighbour has no
// address.
func parseNeigh(b []byte) (n neigh, ok bool) {
	if len(b) < unix.SizeofNdMsg {
		return n, false
	}
	n.family = b[0]
	n.ifindex = int(int32(binary.NativeEndian.Uint32(b[4:8])))
	n.state = binary.NativeEndian.Uint16(b[8:10])
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofNdMsg:])
	if err != nil {
		return n, false
	}
	var dst []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NDA_DST:
			dst = ad.Bytes()
		case unix.NDA_LLADDR:
			if mac := ad.Bytes(); len(mac) > 0 {
				n.mac = net.HardwareAddr(mac).String()
			}
		}
	}
	if ad.Err() != nil {
		return n, false
	}
	if n.family != unix.AF_INET && n.family != unix.AF_INET6 {
		return n, true
	}
	ip, ok := netip.AddrFromSlice(dst)
	if !ok || ip.Is4() != (n.family == unix.AF_INET) {
		return n, false
	}
	n.ip = ip
	return n, true
}
