package xdp

import (
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// TestCGNATMalformedSYNNoMapping: a subscriber's SYN whose TCP data
// offset is 3 (a 12-byte header) goes through relay_sub and is dropped,
// counted once under drop-bad-tcp-offset, and the CGNAT's mappings stay
// as they were (the datapath's own, read from its maps, not only the
// model's). The same SYN with offset 5 then makes its mapping, so it is
// the data offset alone that stopped it.
func TestCGNATMalformedSYNNoMapping(t *testing.T) {
	h := newCGHarness(t, cgnat.EIF)
	h.checkReasons = true // compare: exactly that reason counted, once
	syn := xlattest.Spec{Proto: 6, Src: cgnattest.SubA, SPort: 6000, Dst: cgnattest.R4, DPort: 443,
		TTL: 64, TCPFlags: 0x02, Payload: []byte("some bytes of a payload, more than twenty")}
	before, err := h.d.CGNATMappings()
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.compare(xlat.RoleRelaySub, xlattest.SetTCPDataOffset(xlattest.Build(syn), 3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != xlat.ReasonDropBadTCPOffset || res.Verdict != xlat.Drop {
		t.Fatalf("SYN with data offset 3: %v/%v, want drop/%v", res.Verdict, res.Reason, xlat.ReasonDropBadTCPOffset)
	}
	after, err := h.d.CGNATMappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("SYN with data offset 3: the datapath's mappings went from %d to %d", len(before), len(after))
	}
	if res, err = h.compare(xlat.RoleRelaySub, xlattest.Build(syn)); err != nil || !res.Hit {
		t.Fatalf("the same SYN with data offset 5: %v (%v)", res.Reason, err)
	}
	if after, err = h.d.CGNATMappings(); err != nil || len(after) != len(before)+1 {
		t.Fatalf("the same SYN with data offset 5: %d mappings, want %d (%v)", len(after), len(before)+1, err)
	}
	h.compareState(t)
}
