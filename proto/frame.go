package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame is type(1) length(2) body(length). The length bounds every body
// to MaxBody bytes; a reader may set a lower limit.
const (
	HeaderLen = 3
	MaxBody   = 1<<16 - 1
)

// Parse decodes body, exactly one message body of type t. It never
// panics and allocates no more than a bounded multiple of len(body).
// An unknown t gives an *UnknownTypeError.
func Parse(t Type, body []byte) (Message, error) {
	r := &reader{t: t, b: body}
	var m Message
	var err error
	switch t {
	case TypeHello:
		m, err = parseHello(r)
	case TypeWelcome:
		m, err = parseWelcome(r)
	case TypeFlowOpen:
		m, err = parseFlowOpen(r)
	case TypeFlowGrant:
		m, err = parseFlowGrant(r)
	case TypeFlowOffer:
		m, err = parseFlowOffer(r)
	case TypeOfferReply:
		m, err = parseOfferReply(r)
	case TypeCarrierBound:
		m, err = parseCarrierBound(r)
	case TypeFlowClose:
		m, err = parseFlowClose(r)
	case TypeCarrierMoved:
		m, err = parseCarrierMoved(r)
	case TypeReplay:
		m, err = parseReplay(r)
	case TypeReplayDone:
		m, err = parseReplayDone(r)
	case TypePing:
		m, err = parsePing(r)
	case TypePong:
		m, err = parsePong(r)
	case TypeGoodbye:
		m, err = parseGoodbye(r)
	case TypeICMPError:
		m, err = parseICMPError(r)
	default:
		return nil, &UnknownTypeError{Type: t}
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// AppendMessage appends m's frame (header and body) to b.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	n := m.Length()
	if n > MaxBody {
		return b, &TooLargeError{Type: m.Type(), Length: n, Max: MaxBody}
	}
	b = append(b, uint8(m.Type()))
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return m.Append(b), nil
}

// WriteMessage writes m's frame to w in one Write.
func WriteMessage(w io.Writer, m Message) error {
	b, err := AppendMessage(make([]byte, 0, HeaderLen+m.Length()), m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ReadMessage reads one frame from r. A body longer than maxLen (or
// MaxBody, if maxLen is 0 or larger) is refused with a *TooLargeError
// before it is read. An unknown type gives an *UnknownTypeError after its
// body was consumed, so the stream stays in step. A frame cut short by
// the end of r gives an error wrapping ErrTruncated, or io.EOF if r ended
// cleanly before the frame began.
func ReadMessage(r io.Reader, maxLen int) (Message, error) {
	if maxLen <= 0 || maxLen > MaxBody {
		maxLen = MaxBody
	}
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("proto: frame header: %w", ErrTruncated)
		}
		return nil, err
	}
	t := Type(hdr[0])
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > maxLen {
		return nil, &TooLargeError{Type: t, Length: n, Max: maxLen}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("proto: %v body: %w", t, ErrTruncated)
		}
		return nil, err
	}
	return Parse(t, body)
}
