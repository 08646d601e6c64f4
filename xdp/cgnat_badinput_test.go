package xdp

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/session/cgnat"
	"github.com/unmap-dev/unmap/session/cgnat/cgnattest"
	"github.com/unmap-dev/unmap/session/xlat"
)

// TestCGNATBadSubscriberInput: malformed and truncated packets on the
// subscriber interface. Every subscriber-side fixture cut short at
// every length, and bent in each header field a parser trusts (IPv4
// version, header length, total length longer and shorter than the
// frame, TCP data offset, the quoted header of an ICMP error), goes
// through relay_sub and the model: the same verdict, bytes and reason
// counter, never a translation, always a named reason (no `reason-N`),
// so an operator sees why each one died; a bent TCP data offset always
// drop-bad-tcp-offset. Truncated copies of packets that would make a
// mapping make none.
func TestCGNATBadSubscriberInput(t *testing.T) {
	h := newCGHarness(t, cgnat.ADF)
	h.checkReasons = true
	seen := map[xlat.Reason]int{}
	try := func(name string, in []byte) {
		t.Helper()
		res, err := h.compare(xlat.RoleRelaySub, in)
		if err != nil {
			t.Fatalf("%s %x: %v", name, in, err)
		}
		if strings.Contains(name, "TCP data offset") && res.Reason != xlat.ReasonDropBadTCPOffset {
			t.Fatalf("%s %x: %v, want %v", name, in, res.Reason, xlat.ReasonDropBadTCPOffset)
		}
		if res.Hit || res.Reason == xlat.ReasonNone {
			t.Fatalf("%s %x: translated (%v)", name, in, res.Reason)
		}
		if strings.HasPrefix(res.Reason.String(), "reason-") {
			t.Fatalf("%s: unnamed reason %v", name, res.Reason)
		}
		seen[res.Reason]++
	}
	n := 0
	for _, fx := range cgnattest.Fixtures(cgnat.ADF) {
		if fx.Role != xlat.RoleRelaySub || len(fx.In) < 14+20 || binary.BigEndian.Uint16(fx.In[12:]) != 0x0800 {
			continue
		}
		in := fx.In
		for l := 14; l < len(in); l++ {
			try(fx.Name+" cut", append([]byte(nil), in[:l]...))
			n++
		}
		bent := []struct {
			what string
			edit func(b []byte)
		}{
			{"version 6", func(b []byte) { b[14] = 0x60 | b[14]&0x0f }},
			{"header length 4 words", func(b []byte) { b[14] = 0x44 }},
			{"header length past the frame", func(b []byte) { b[14] = 0x4f }},
			{"total length past the frame", func(b []byte) { binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14+1)) }},
			{"total length shorter than the header", func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }},
			{"total length 0", func(b []byte) { binary.BigEndian.PutUint16(b[16:], 0) }},
		}
		switch {
		case in[14+9] == 6 && len(in) >= 14+20+20:
			bent = append(bent,
				struct {
					what string
					edit func(b []byte)
				}{"TCP data offset past the packet", func(b []byte) { b[14+20+12] = 0xf0 }},
				struct {
					what string
					edit func(b []byte)
				}{"TCP data offset 0", func(b []byte) { b[14+20+12] = 0x00 }})
		case in[14+9] == 1 && len(in) >= 14+20+8+20+8:
			if in[14+20] == 3 || in[14+20] == 11 { // an error: its quote cut to the ICMP header
				bent = append(bent, struct {
					what string
					edit func(b []byte)
				}{"ICMP error quoting 4 bytes of IPv4", func(b []byte) {
					binary.BigEndian.PutUint16(b[16:], 20+8+4)
				}})
			}
		}
		for _, b := range bent {
			c := append([]byte(nil), in...)
			b.edit(c)
			if b.what == "ICMP error quoting 4 bytes of IPv4" {
				c = c[:14+20+8+4]
			}
			try(fx.Name+" "+b.what, c)
			n++
		}
	}
	h.compareState(t)
	if n < 500 {
		t.Errorf("only %d bad packets: the fixtures changed?", n)
	}
	t.Logf("%d bad packets, reasons %v", n, seen)
}
