package relay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

func TestWelcome(t *testing.T) {
	s, err := Load("../examples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	all := proto.CapIPv4Public | proto.CapTCPOffer | proto.CapUDPCarrier | proto.CapCounters | 1<<40
	hello := func(site string) *proto.Hello {
		return &proto.Hello{Version: 7, Capabilities: all, Site: site}
	}
	w, code := s.welcome("shop", hello("shop"), 42, 15*time.Second)
	if code != proto.CodeOK {
		t.Fatalf("code %v", code)
	}
	if w.Version != proto.Version || w.Capabilities.Has(1<<40) || !w.Capabilities.Has(proto.CapTCPOffer) {
		t.Errorf("version %d capabilities %b", w.Version, w.Capabilities)
	}
	if w.Prefix.String() != "2001:db8:5:100::/56" || w.PublicIPv4.String() != "203.0.113.11" ||
		w.PublicPorts != (proto.PortRange{First: 1024, Last: 33791}) || w.SessionID != 42 {
		t.Errorf("grant %+v", w)
	}
	if w.Timers.KeepaliveMS != 15000 || w.Timers.TCPEstablishedSec != 7440 || len(w.CarrierRanges) != 3 || len(w.RelayAddrs) != 1 {
		t.Errorf("timers %+v ranges %v addrs %v", w.Timers, w.CarrierRanges, w.RelayAddrs)
	}
	// A site with the whole address gets no port set; one that does not
	// offer the capability gets no IPv4.
	if w, _ := s.welcome("home", hello("home"), 1, time.Second); w.PublicPorts != (proto.PortRange{}) || !w.PublicIPv4.IsValid() {
		t.Errorf("home grant %+v", w)
	}
	h := hello("home")
	h.Capabilities = proto.CapTCPOffer
	if w, _ := s.welcome("home", h, 1, time.Second); w.PublicIPv4.IsValid() {
		t.Errorf("IPv4 granted without the capability: %v", w.PublicIPv4)
	}

	for _, tc := range []struct {
		name     string
		certSite string
		mutate   func(*proto.Hello)
		want     proto.Code
	}{
		{"unknown site", "nobody", func(h *proto.Hello) { h.Site = "nobody" }, proto.CodeUnknownSite},
		{"hello names another site", "home", func(h *proto.Hello) { h.Site = "shop" }, proto.CodeSiteMismatch},
		{"prefix of another site", "home", func(h *proto.Hello) { h.WantPrefix = netip.MustParsePrefix("2001:db8:5:100::/64") }, proto.CodePrefixNotGranted},
		{"prefix wider than granted", "home", func(h *proto.Hello) { h.WantPrefix = netip.MustParsePrefix("2001:db8:4::/46") }, proto.CodePrefixNotGranted},
		{"ipv4 of another site", "home", func(h *proto.Hello) { h.WantIPv4 = netip.MustParseAddr("203.0.113.11") }, proto.CodeAddressNotGranted},
		{"own /64 is fine", "home", func(h *proto.Hello) { h.WantPrefix = netip.MustParsePrefix("2001:db8:5:7::/64") }, proto.CodeOK},
	} {
		h := hello(tc.certSite)
		tc.mutate(h)
		if _, code := s.welcome(tc.certSite, h, 1, time.Second); code != tc.want {
			t.Errorf("%s: code %v, want %v", tc.name, code, tc.want)
		}
	}
}
