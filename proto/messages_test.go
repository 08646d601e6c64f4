package proto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/unmap-dev/unmap/session"
)

func TestSamplesCoverEveryType(t *testing.T) {
	seen := map[Type]bool{}
	for _, m := range samples() {
		seen[m.Type()] = true
	}
	for typ := range typeNames {
		if !seen[typ] {
			t.Errorf("no sample of %v", typ)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples() {
		body := m.Append(nil)
		if len(body) != m.Length() {
			t.Errorf("%v: Length() = %d, Append wrote %d", m.Type(), m.Length(), len(body))
		}
		got, err := Parse(m.Type(), body)
		if err != nil {
			t.Errorf("%v: %v", m.Type(), err)
			continue
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%v: round trip\n got %+v\nwant %+v", m.Type(), got, m)
		}
	}
}

func TestAppendExtends(t *testing.T) {
	// Append must append, not overwrite what b already holds.
	for _, m := range samples() {
		b := m.Append([]byte("xyz"))
		if string(b[:3]) != "xyz" || !bytes.Equal(b[3:], m.Append(nil)) {
			t.Errorf("%v: Append clobbered its prefix", m.Type())
		}
	}
}

func TestEveryTruncatedPrefixFails(t *testing.T) {
	for _, m := range samples() {
		body := m.Append(nil)
		for n := 0; n < len(body); n++ {
			_, err := Parse(m.Type(), body[:n])
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v cut to %d of %d bytes: err = %v, want ErrTruncated or ErrInvalid", m.Type(), n, len(body), err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Type != m.Type() {
				t.Fatalf("%v cut to %d: %v is not a *FieldError of the type", m.Type(), n, err)
			}
		}
	}
}

func TestTrailingBytesIgnored(t *testing.T) {
	// A later minor version appends fields; this version must read its own
	// fields and skip the rest.
	for _, m := range samples() {
		body := append(m.Append(nil), 0xee, 0xee, 0xee)
		got, err := Parse(m.Type(), body)
		if err != nil {
			t.Fatalf("%v with trailing bytes: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%v with trailing bytes decoded differently", m.Type())
		}
	}
}

func TestFramesRoundTripOnAStream(t *testing.T) {
	var buf bytes.Buffer
	all := samples()
	for _, m := range all {
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range all {
		got, err := ReadMessage(&buf, 0)
		if err != nil {
			t.Fatalf("reading %v: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v: stream round trip differs", want.Type())
		}
	}
	if _, err := ReadMessage(&buf, 0); err != io.EOF {
		t.Errorf("after the last frame: err = %v, want io.EOF", err)
	}
}

func TestTruncatedFrames(t *testing.T) {
	frame, err := AppendMessage(nil, samples()[0])
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(frame); n++ {
		_, err := ReadMessage(bytes.NewReader(frame[:n]), 0)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("frame cut to %d of %d: err = %v, want ErrTruncated", n, len(frame), err)
		}
	}
}

func TestOversizedBodyRefusedUnread(t *testing.T) {
	m := &Replay{Entries: make([]ReplayEntry, 100)}
	for i := range m.Entries {
		m.Entries[i] = ReplayEntry{Flow: flow4, CarrierProto: session.UDP, Relay: relayR}
	}
	var buf bytes.Buffer
	if err := WriteMessage(&buf, m); err != nil {
		t.Fatal(err)
	}
	total := buf.Len()
	_, err := ReadMessage(&buf, 1024)
	var tl *TooLargeError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &tl) {
		t.Fatalf("err = %v, want a *TooLargeError", err)
	}
	if tl.Type != TypeReplay || tl.Length != m.Length() || tl.Max != 1024 {
		t.Errorf("TooLargeError = %+v", tl)
	}
	if read := total - buf.Len(); read != HeaderLen {
		t.Errorf("read %d bytes, want only the %d-byte header", read, HeaderLen)
	}
	if CodeOf(err) != CodeTooLarge {
		t.Errorf("CodeOf = %v", CodeOf(err))
	}
}

func TestAppendMessageRefusesOverMaxBody(t *testing.T) {
	m := &Replay{Entries: make([]ReplayEntry, MaxBody/replayEntryLen+1)}
	if _, err := AppendMessage(nil, m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestUnknownTypes(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{0x7e, 0, 2, 1, 2}) // unknown critical
	buf.Write([]byte{0x9a, 0, 1, 9})    // unknown advisory
	WriteMessage(&buf, &Ping{Seq: 42})  // and the stream goes on
	for _, want := range []Type{0x7e, 0x9a} {
		_, err := ReadMessage(&buf, 0)
		var ut *UnknownTypeError
		if !errors.Is(err, ErrUnknownType) || !errors.As(err, &ut) || ut.Type != want {
			t.Fatalf("err = %v, want unknown type %v", err, want)
		}
		if want.Advisory() != (want >= 0x80) {
			t.Errorf("%v.Advisory() wrong", want)
		}
	}
	m, err := ReadMessage(&buf, 0)
	if err != nil || m.(*Ping).Seq != 42 {
		t.Fatalf("stream out of step after unknown types: %v %v", m, err)
	}
	if CodeOf(&UnknownTypeError{Type: 0x7e}) != CodeUnsupportedType {
		t.Error("CodeOf(unknown type) is not CodeUnsupportedType")
	}
}

func TestInvalidValues(t *testing.T) {
	mutate := func(m Message, off int, v byte) []byte {
		b := m.Append(nil)
		b[off] = v
		return b
	}
	hello := &Hello{Site: "a"}
	open := &FlowOpen{Flow: flow4, CarrierProto: session.UDP}
	offer := &FlowOffer{Flow: flow6, CarrierProto: session.TCP, Relay: relayR, SYN: synHeader()}
	synOff := 4 + flowLen + 1 + addrPortLen + 4 // offset of syn_len in FlowOffer
	mixed := flow6
	mixed.Remote = flow4.Remote
	cases := []struct {
		name string
		t    Type
		body []byte
	}{
		{"hello with empty site", TypeHello, mutate(hello, 9, 0)},
		{"hello with a 64-byte site", TypeHello, (&Hello{Site: strings.Repeat("a", 64)}).Append(nil)},
		{"prefix with host bits", TypeHello, (&Hello{Site: "a", WantPrefix: netip.PrefixFrom(netip.MustParseAddr("2001:db8::1"), 48)}).Append(nil)},
		{"prefix longer than its family", TypeHello, mutate(&Hello{Site: "a", WantPrefix: netip.MustParsePrefix("192.0.2.0/24")}, 1+8+2+8+addrLen, 33)},
		{"hello want_ipv4 is IPv6", TypeHello, (&Hello{Site: "a", WantIPv4: netip.MustParseAddr("2001:db8::1")}).Append(nil)},
		{"welcome without session id", TypeWelcome, (&Welcome{}).Append(nil)},
		{"welcome with 17 relay addresses", TypeWelcome, (&Welcome{SessionID: 1, RelayAddrs: make([]netip.Addr, 17)}).Append(nil)},
		{"welcome port range backwards", TypeWelcome, (&Welcome{SessionID: 1, PublicPorts: PortRange{10, 9}}).Append(nil)},
		{"flow proto 0", TypeFlowOpen, mutate(open, 5, 0)},
		{"flow mixes families", TypeFlowOpen, (&FlowOpen{Flow: mixed, CarrierProto: session.TCP}).Append(nil)},
		{"chosen R is IPv6", TypeFlowOpen, (&FlowOpen{Flow: flow4, CarrierProto: session.UDP, Relay: netip.MustParseAddrPort("[2001:db8::1]:9")}).Append(nil)},
		{"carrier proto gre", TypeFlowOpen, (&FlowOpen{Flow: flow4, CarrierProto: 47}).Append(nil)},
		{"grant OK without relay", TypeFlowGrant, (&FlowGrant{Result: CodeOK}).Append(nil)},
		{"syn of 19 bytes", TypeFlowOffer, mutate(offer, synOff, 19)},
		{"syn length not data offset", TypeFlowOffer, mutate(offer, synOff+1+12, 0x50)},
		{"syn on a udp flow", TypeFlowOffer, (&FlowOffer{Flow: flow4, CarrierProto: session.UDP, Relay: relayR, SYN: synHeader()}).Append(nil)},
		{"bound without public", TypeCarrierBound, (&CarrierBound{Flow: flow6}).Append(nil)},
		{"port without address", TypeCarrierBound, (&CarrierBound{Flow: flow6, Public: netip.AddrPortFrom(netip.Addr{}, 9)}).Append(nil)},
		{"moved without public", TypeCarrierMoved, (&CarrierMoved{Flow: flow6}).Append(nil)},
		{"replay of 513 entries", TypeReplay, []byte{0, 0x02, 0x01}},
		{"replayed carrier public side is IPv6", TypeReplay, (&Replay{Entries: []ReplayEntry{{Flow: flow6, CarrierProto: session.UDP, Relay: relayR, Public: netip.MustParseAddrPort("[2001:db8::1]:4000")}}}).Append(nil)},
		{"ping of 33 counters", TypePing, append([]byte{0, 0, 0, 0, 33}, make([]byte, 330)...)},
	}
	for _, c := range cases {
		_, err := Parse(c.t, c.body)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
		}
		if CodeOf(err) != CodeMalformed {
			t.Errorf("%s: CodeOf = %v, want malformed", c.name, CodeOf(err))
		}
	}
}

func TestCodesAreErrors(t *testing.T) {
	err := errors.Join(errors.New("opening flow"), CodePrefixNotGranted)
	if !errors.Is(err, CodePrefixNotGranted) || errors.Is(err, CodeUnknownSite) {
		t.Fatal("errors.Is does not tell codes apart")
	}
	if CodeOf(err) != CodePrefixNotGranted {
		t.Errorf("CodeOf = %v", CodeOf(err))
	}
	if Code(999).String() != "code-999" || CodeShutdown.String() != "shutdown" {
		t.Error("Code.String")
	}
	if TypeFlowOpen.String() != "flow-open" || Type(0x99).String() != "type-0x99" {
		t.Error("Type.String")
	}
}

// TestSpecSizes pins the body sizes SPEC.md's message table gives.
func TestSpecSizes(t *testing.T) {
	cases := []struct {
		m    Message
		want int
	}{
		{&Hello{Site: "abc"}, 67 + 3},
		{&Welcome{RelayAddrs: make([]netip.Addr, 2), CarrierRanges: make([]CarrierRange, 3)}, 80 + 32 + 15},
		{&FlowOpen{}, 75},
		{&FlowGrant{}, 28},
		{&FlowOffer{SYN: make([]byte, 40)}, 65 + 40},
		{&OfferReply{}, 16},
		{&CarrierBound{}, 57},
		{&FlowClose{}, 39},
		{&CarrierMoved{}, 55},
		{&Replay{Entries: make([]ReplayEntry, 2)}, 3 + 176},
		{&ReplayDone{}, 8},
		{&Ping{Counters: make([]Counter, 2)}, 25},
		{&Pong{}, 5},
		{&Goodbye{Reason: "ab"}, 9},
		{&ICMPError{Packet: make([]byte, 1280)}, 2 + 1280},
	}
	for _, c := range cases {
		if got := c.m.Length(); got != c.want {
			t.Errorf("%v: Length %d, SPEC.md says %d", c.m.Type(), got, c.want)
		}
		if got := len(c.m.Append(nil)); got != c.want {
			t.Errorf("%v: Append wrote %d, SPEC.md says %d", c.m.Type(), got, c.want)
		}
	}
}
