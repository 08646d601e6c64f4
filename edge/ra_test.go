package edge

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestRABody(t *testing.T) {
	cfg, err := RAConfig{Interface: "lan0", Prefix: netip.MustParsePrefix("2001:db8:5::/64"), MTU: 1500}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	a := &Advertiser{cfg: cfg, ifi: &net.Interface{Name: "lan0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}
	for _, final := range []bool{false, true} {
		body, err := a.body(final)
		if err != nil {
			t.Fatal(err)
		}
		// Decode the whole ICMPv6 message as a host would.
		msg := append([]byte{134, 0, 0, 0}, body...)
		p := gopacket.NewPacket(msg, layers.LayerTypeICMPv6, gopacket.Default)
		ra, ok := p.Layer(layers.LayerTypeICMPv6RouterAdvertisement).(*layers.ICMPv6RouterAdvertisement)
		if !ok {
			t.Fatalf("final=%v: no RA decoded: %v", final, p.ErrorLayer())
		}
		wantLife := uint16(1800)
		if final {
			wantLife = 0
		}
		if ra.RouterLifetime != wantLife || ra.HopLimit != 64 {
			t.Errorf("final=%v: lifetime %d hop limit %d", final, ra.RouterLifetime, ra.HopLimit)
		}
		var sawPrefix, sawMTU, sawLL bool
		for _, o := range ra.Options {
			if (len(o.Data)+2)%8 != 0 {
				t.Errorf("option %v has length %d, not a multiple of 8", o.Type, len(o.Data)+2)
			}
			switch o.Type {
			case layers.ICMPv6OptPrefixInfo:
				sawPrefix = true
				pfx := netip.PrefixFrom(netip.AddrFrom16([16]byte(o.Data[14:30])), int(o.Data[0]))
				if pfx != cfg.Prefix || o.Data[1] != 0xc0 {
					t.Errorf("prefix option %v flags %#x", pfx, o.Data[1])
				}
				preferred := time.Duration(binary.BigEndian.Uint32(o.Data[6:])) * time.Second
				if final != (preferred == 0) {
					t.Errorf("final=%v: preferred lifetime %v", final, preferred)
				}
			case layers.ICMPv6OptMTU:
				sawMTU = binary.BigEndian.Uint32(o.Data[2:]) == 1500
			case layers.ICMPv6OptSourceAddress:
				sawLL = net.HardwareAddr(o.Data).String() == "02:00:00:00:00:01"
			}
		}
		if !sawPrefix || !sawMTU || !sawLL {
			t.Errorf("final=%v: prefix %v mtu %v source link-layer %v", final, sawPrefix, sawMTU, sawLL)
		}
	}
}

func TestRAConfigRefuses(t *testing.T) {
	for _, c := range []RAConfig{
		{Prefix: netip.MustParsePrefix("2001:db8:5::/64")},
		{Interface: "x", Prefix: netip.MustParsePrefix("2001:db8:5::/56")},
		{Interface: "x", Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		{Interface: "x", Prefix: netip.MustParsePrefix("2001:db8:5::/64"), Interval: time.Second},
		{Interface: "x", Prefix: netip.MustParsePrefix("2001:db8:5::/64"), Interval: time.Hour, Lifetime: time.Minute},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
