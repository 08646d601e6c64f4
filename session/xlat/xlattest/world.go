package xlattest

import (
	"net/netip"

	"github.com/unmap-dev/unmap/session/xlat"
)

// The fixture world: one site behind a CGNAT, one relay, two remotes.
var (
	SiteHost  = netip.MustParseAddr("2001:db8:1::10") // LAN host, delegated prefix
	Remote6   = netip.MustParseAddr("2001:db8:2::20") // IPv6 Internet peer
	EdgeWAN   = netip.MustParseAddr("100.64.0.2")     // edge's address behind the CGNAT
	RelayAddr = netip.MustParseAddr("203.0.113.1")    // relay's carrier address
	CGNATPub  = netip.MustParseAddr("198.51.100.7")   // CGNAT's public address
	LANHost4  = netip.MustParseAddr("192.0.2.10")     // LAN host's IPv4
	SitePub4  = netip.MustParseAddr("198.51.100.50")  // site's public IPv4 on the relay
	Remote4   = netip.MustParseAddr("203.0.113.99")   // IPv4 Internet peer
	EdgeLocal = netip.MustParseAddr("2001:db8:1::1")  // the edge router's LAN address

	SitePrefix = netip.MustParsePrefix("2001:db8:1::/48")

	// Another site on the same relay: its prefix and public IPv4.
	OtherSite    = netip.MustParsePrefix("2001:db8:3::/48")
	OtherSitePub = netip.MustParseAddr("198.51.100.60")

	// Far ends no packet may come from (martian.go), with entries all the
	// same: a flow the site named (say, to ::ffff:127.0.0.1), whose
	// replies the datapath drops anyway.
	MartianRemote6 = netip.MustParseAddr("::ffff:127.0.0.1")
	MartianRemote4 = netip.MustParseAddr("127.0.0.9")
)

// Config is the datapath configuration of both ends in the world (the
// edge and the relay use the same carrier port range).
func Config(carrier netip.Addr) xlat.Config {
	return xlat.Config{CarrierAddr: carrier, PortLo: 20000, PortHi: 39999}
}

// Tables is an in-memory xlat.Tables.
type Tables struct {
	Flows  map[xlat.Key]xlat.Entry
	Local  map[netip.Addr]bool
	Prefix []netip.Prefix
}

func (t *Tables) Lookup(k xlat.Key) (xlat.Entry, bool) { e, ok := t.Flows[k]; return e, ok }
func (t *Tables) IsLocal(a netip.Addr) bool            { return t.Local[a] }
func (t *Tables) InSite(a netip.Addr) bool {
	for _, p := range t.Prefix {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func k(proto uint8, s netip.Addr, sp uint16, d netip.Addr, dp uint16) xlat.Key {
	return xlat.Key{Proto: proto, Src: s, SPort: sp, Dst: d, DPort: dp}
}

func e(a xlat.Action, proto uint8, s netip.Addr, sp uint16, d netip.Addr, dp uint16) xlat.Entry {
	return xlat.Entry{Action: a, Proto: proto, Src: s, SPort: sp, Dst: d, DPort: dp}
}

// World returns the tables of the fixture world: for each kind of flow,
// the entries at the edge (LAN and WAN side) and at the relay, both ways.
// All live in one table, as they would in one test datapath.
func World() *Tables {
	t := &Tables{Flows: map[xlat.Key]xlat.Entry{}, Local: map[netip.Addr]bool{EdgeLocal: true, EdgeWAN: true},
		Prefix: []netip.Prefix{SitePrefix, netip.PrefixFrom(SitePub4, 32), OtherSite, netip.PrefixFrom(OtherSitePub, 32)}}
	add := func(kk xlat.Key, ee xlat.Entry) { t.Flows[kk] = ee }
	// Native TCP and UDP: site:40000 <-> remote:443, carrier E=20000,
	// R=30000, C=20001 (per protocol the same numbers).
	for _, pr := range []uint8{6, 17} {
		add(k(pr, SiteHost, 40000, Remote6, 443), e(xlat.ActXlat64, pr, EdgeWAN, 20000, RelayAddr, 30000))
		add(k(pr, RelayAddr, 30000, EdgeWAN, 20000), e(xlat.ActXlat46, pr, Remote6, 443, SiteHost, 40000))
		add(k(pr, CGNATPub, 20001, RelayAddr, 30000), e(xlat.ActXlat46, pr, SiteHost, 40000, Remote6, 443))
		add(k(pr, Remote6, 443, SiteHost, 40000), e(xlat.ActXlat64, pr, RelayAddr, 30000, CGNATPub, 20001))
	}
	// ICMP echo, site pings remote: id 77 <-> carrier echo id 20002 (C 20003).
	add(k(58, SiteHost, 77, Remote6, 0), e(xlat.ActXlat64, 1, EdgeWAN, 20002, RelayAddr, 0))
	add(k(1, RelayAddr, 0, EdgeWAN, 20002), e(xlat.ActXlat46, 58, Remote6, 0, SiteHost, 77))
	add(k(1, CGNATPub, 20003, RelayAddr, 0), e(xlat.ActXlat46, 58, SiteHost, 77, Remote6, 0))
	add(k(58, Remote6, 0, SiteHost, 77), e(xlat.ActXlat64, 1, RelayAddr, 0, CGNATPub, 20003))
	// UDP carrier: ESP (50) both ways on carrier 20004 <-> 30004 (C 20005).
	add(k(50, SiteHost, 0, Remote6, 0), e(xlat.ActWrap64, 0, EdgeWAN, 20004, RelayAddr, 30004))
	add(k(17, RelayAddr, 30004, EdgeWAN, 20004), e(xlat.ActUnwrap46, 50, Remote6, 0, SiteHost, 0))
	add(k(17, CGNATPub, 20005, RelayAddr, 30004), e(xlat.ActUnwrap46, 50, SiteHost, 0, Remote6, 0))
	add(k(50, Remote6, 0, SiteHost, 0), e(xlat.ActWrap64, 0, RelayAddr, 30004, CGNATPub, 20005))
	// Inbound ICMPv6 echo (remote pings the site host) rides a UDP
	// carrier 20006 <-> 30006 (C 20007); the reply goes back the same way.
	add(k(58, Remote6, 99, SiteHost, 0), e(xlat.ActWrap64, 0, RelayAddr, 30006, CGNATPub, 20007))
	add(k(17, RelayAddr, 30006, EdgeWAN, 20006), e(xlat.ActUnwrap46, 58, Remote6, 0, SiteHost, 0))
	add(k(58, SiteHost, 0, Remote6, 99), e(xlat.ActWrap64, 0, EdgeWAN, 20006, RelayAddr, 30006))
	add(k(17, CGNATPub, 20007, RelayAddr, 30006), e(xlat.ActUnwrap46, 58, SiteHost, 0, Remote6, 0))
	// IPv4 NAPT: LAN host 192.0.2.10:5000 uses the site's public IPv4.
	// Edge: LAN <-> carrier 20008 <-> 30008 (C 20009); relay: carrier
	// <-> public 198.51.100.50:5000 <-> remote 203.0.113.99:80.
	for _, pr := range []uint8{6, 17} {
		add(k(pr, LANHost4, 5000, Remote4, 80), e(xlat.ActNAPT44, pr, EdgeWAN, 20008, RelayAddr, 30008))
		add(k(pr, RelayAddr, 30008, EdgeWAN, 20008), e(xlat.ActNAPT44, pr, Remote4, 80, LANHost4, 5000))
		add(k(pr, CGNATPub, 20009, RelayAddr, 30008), e(xlat.ActNAPT44, pr, SitePub4, 5000, Remote4, 80))
		add(k(pr, Remote4, 80, SitePub4, 5000), e(xlat.ActNAPT44, pr, RelayAddr, 30008, CGNATPub, 20009))
	}
	// NAPT ICMP echo: LAN host id 55 <-> carrier id 20010.
	add(k(1, LANHost4, 55, Remote4, 0), e(xlat.ActNAPT44, 1, EdgeWAN, 20010, RelayAddr, 0))
	add(k(1, RelayAddr, 0, EdgeWAN, 20010), e(xlat.ActNAPT44, 1, Remote4, 0, LANHost4, 55))
	// Replies from martian far ends: an IPv6 one at the relay, an IPv4
	// one NAPTed at the relay and one carrier-side at the edge.
	add(k(6, MartianRemote6, 443, SiteHost, 40002), e(xlat.ActXlat64, 6, RelayAddr, 30012, CGNATPub, 20013))
	add(k(6, MartianRemote4, 80, SitePub4, 5002), e(xlat.ActNAPT44, 6, RelayAddr, 30014, CGNATPub, 20015))
	add(k(6, MartianRemote4, 30016, EdgeWAN, 20016), e(xlat.ActNAPT44, 6, Remote4, 80, LANHost4, 5003))
	// A broken entry: an IPv6 action on an IPv4 key.
	add(k(6, Remote4, 81, SitePub4, 5001), e(xlat.ActXlat64, 6, RelayAddr, 1, CGNATPub, 2))
	return t
}
