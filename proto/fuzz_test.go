package proto

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// One fuzz target per decoder, and one for the framing. Seeds are the
// samples (and their cuts) via f.Add, plus the corpus committed under
// testdata/fuzz, which `go test -run TestWriteSeedCorpus -update-corpus`
// rewrites from the samples.

func FuzzHello(f *testing.F)        { fuzzType(f, TypeHello) }
func FuzzWelcome(f *testing.F)      { fuzzType(f, TypeWelcome) }
func FuzzFlowOpen(f *testing.F)     { fuzzType(f, TypeFlowOpen) }
func FuzzFlowGrant(f *testing.F)    { fuzzType(f, TypeFlowGrant) }
func FuzzFlowOffer(f *testing.F)    { fuzzType(f, TypeFlowOffer) }
func FuzzOfferReply(f *testing.F)   { fuzzType(f, TypeOfferReply) }
func FuzzCarrierBound(f *testing.F) { fuzzType(f, TypeCarrierBound) }
func FuzzFlowClose(f *testing.F)    { fuzzType(f, TypeFlowClose) }
func FuzzCarrierMoved(f *testing.F) { fuzzType(f, TypeCarrierMoved) }
func FuzzReplay(f *testing.F)       { fuzzType(f, TypeReplay) }
func FuzzReplayDone(f *testing.F)   { fuzzType(f, TypeReplayDone) }
func FuzzPing(f *testing.F)         { fuzzType(f, TypePing) }
func FuzzPong(f *testing.F)         { fuzzType(f, TypePong) }
func FuzzGoodbye(f *testing.F)      { fuzzType(f, TypeGoodbye) }
func FuzzICMPError(f *testing.F)    { fuzzType(f, TypeICMPError) }

func fuzzType(f *testing.F, t Type) {
	for _, m := range samples() {
		if m.Type() == t {
			b := m.Append(nil)
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Fuzz(func(tt *testing.T, body []byte) {
		checkParse(tt, t, body)
	})
}

// checkParse is the property every decoder keeps: no panic, and anything
// it accepts re-encodes to at most the bytes it read and decodes again to
// the same message.
func checkParse(t *testing.T, typ Type, body []byte) {
	m, err := Parse(typ, body)
	if err != nil {
		if m != nil {
			t.Fatalf("Parse returned a message and an error %v", err)
		}
		if CodeOf(err) != CodeMalformed && CodeOf(err) != CodeUnsupportedType {
			t.Fatalf("error %v maps to %v", err, CodeOf(err))
		}
		return
	}
	again := m.Append(nil)
	if len(again) != m.Length() {
		t.Fatalf("Length() = %d, Append wrote %d", m.Length(), len(again))
	}
	if len(again) > len(body) {
		t.Fatalf("re-encoding grew from %d to %d bytes", len(body), len(again))
	}
	m2, err := Parse(typ, again)
	if err != nil {
		t.Fatalf("re-encoded %v does not parse: %v", typ, err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("%v: decode(encode(m)) != m\n%+v\n%+v", typ, m, m2)
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, m := range samples() {
		b, _ := AppendMessage(nil, m)
		f.Add(b, uint16(0))
		f.Add(b, uint16(16))
	}
	f.Add([]byte{0x7e, 0, 1, 0, 0x30, 0, 4}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		r := bytes.NewReader(data)
		for {
			m, err := ReadMessage(r, int(limit))
			if err == nil {
				continue
			}
			if m != nil {
				t.Fatalf("ReadMessage returned a message and an error %v", err)
			}
			var fe *FieldError
			var ut *UnknownTypeError
			switch {
			case errors.As(err, &fe), errors.As(err, &ut):
				continue // the body was consumed: the stream is still in step
			case err == io.EOF, errors.Is(err, ErrTruncated), errors.Is(err, ErrTooLarge):
				return
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz from the samples")

// TestWriteSeedCorpus keeps the committed corpus in step with samples();
// without -update-corpus it checks that every fuzz target has one.
func TestWriteSeedCorpus(t *testing.T) {
	for i, m := range samples() {
		dir := filepath.Join("testdata", "fuzz", "Fuzz"+fuzzName(m.Type()))
		name := filepath.Join(dir, fmt.Sprintf("sample-%02d", i))
		if !*updateCorpus {
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("no seed corpus for %v: %v (run with -update-corpus)", m.Type(), err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := m.Append(nil)
		if err := os.WriteFile(name, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fuzzName(t Type) string {
	return map[Type]string{
		TypeHello: "Hello", TypeWelcome: "Welcome", TypeFlowOpen: "FlowOpen", TypeFlowGrant: "FlowGrant",
		TypeFlowOffer: "FlowOffer", TypeOfferReply: "OfferReply", TypeCarrierBound: "CarrierBound",
		TypeFlowClose: "FlowClose", TypeReplay: "Replay", TypeReplayDone: "ReplayDone",
		TypePing: "Ping", TypePong: "Pong", TypeGoodbye: "Goodbye", TypeICMPError: "ICMPError", TypeCarrierMoved: "CarrierMoved",
	}[t]
}
