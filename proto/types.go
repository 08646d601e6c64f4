package proto

import "fmt"

// Type is a message type code, the first byte of every frame.
type Type uint8

// Advisory reports whether a reader that does not know t may skip it.
func (t Type) Advisory() bool { return t >= 0x80 }

var typeNames = map[Type]string{
	TypeHello:        "hello",
	TypeWelcome:      "welcome",
	TypeFlowOpen:     "flow-open",
	TypeFlowGrant:    "flow-grant",
	TypeFlowOffer:    "flow-offer",
	TypeOfferReply:   "offer-reply",
	TypeCarrierBound: "carrier-bound",
	TypeFlowClose:    "flow-close",
	TypeCarrierMoved: "carrier-moved",
	TypeReplay:       "replay",
	TypeReplayDone:   "replay-done",
	TypePing:         "ping",
	TypePong:         "pong",
	TypeGoodbye:      "goodbye",
	TypeICMPError:    "icmp-error",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type-0x%02x", uint8(t))
}

// Message is one control message. Length and Append describe the body
// only; WriteMessage adds the frame header.
type Message interface {
	Type() Type
	Length() int            // encoded body length in bytes
	Append(b []byte) []byte // appends the encoded body
}

func (*Hello) Type() Type        { return TypeHello }
func (*Welcome) Type() Type      { return TypeWelcome }
func (*FlowOpen) Type() Type     { return TypeFlowOpen }
func (*FlowGrant) Type() Type    { return TypeFlowGrant }
func (*FlowOffer) Type() Type    { return TypeFlowOffer }
func (*OfferReply) Type() Type   { return TypeOfferReply }
func (*CarrierBound) Type() Type { return TypeCarrierBound }
func (*FlowClose) Type() Type    { return TypeFlowClose }
func (*CarrierMoved) Type() Type { return TypeCarrierMoved }
func (*Replay) Type() Type       { return TypeReplay }
func (*ReplayDone) Type() Type   { return TypeReplayDone }
func (*Ping) Type() Type         { return TypePing }
func (*Pong) Type() Type         { return TypePong }
func (*Goodbye) Type() Type      { return TypeGoodbye }
func (*ICMPError) Type() Type    { return TypeICMPError }

// Has reports whether c holds every bit of want.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }
