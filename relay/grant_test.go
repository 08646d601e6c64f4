package relay

import (
	"errors"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/proto"
)

func TestGrant(t *testing.T) {
	s, err := Load("../examples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.grant("shop", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w.Prefix.String() != "2001:db8:5:100::/56" || w.PublicIPv4.String() != "203.0.113.11" ||
		w.PublicPorts != (proto.PortRange{First: 1024, Last: 33791}) || !w.Capabilities.Has(proto.CapIPv4Public) {
		t.Errorf("grant %+v", w)
	}
	if w.Timers.KeepaliveMS != 15000 || w.Timers.TCPEstablishedSec != 7440 || w.Timers.UDPSec != 300 ||
		len(w.CarrierRanges) != 3 || w.CarrierRanges[1].Ports.First != 20000 || len(w.RelayAddrs) != 1 {
		t.Errorf("timers %+v ranges %v addrs %v", w.Timers, w.CarrierRanges, w.RelayAddrs)
	}
	// A site with the whole address gets no port set.
	if w, _ := s.grant("home", time.Second); w.PublicPorts != (proto.PortRange{}) || !w.PublicIPv4.IsValid() {
		t.Errorf("home grant %+v", w)
	}
	if _, err := s.grant("nobody", time.Second); !errors.Is(err, proto.CodeUnknownSite) {
		t.Errorf("unknown site: %v", err)
	}
}
