package proto

import (
	"errors"
	"fmt"
)

// Code is a result or error code. It is carried in FlowGrant, OfferReply,
// FlowClose and Goodbye, and it is the QUIC application error code when a
// connection is closed. A Code is an error, so callers can test a refusal
// with errors.Is(err, proto.CodeQuotaExceeded).
type Code uint16

// Codes of version 1. Numbers are fixed forever; new codes are appended.
const (
	CodeOK                 Code = 0  // success; as a close code: no error
	CodeUnsupportedVersion Code = 1  // no common version
	CodeUnknownSite        Code = 2  // the certificate's site is not configured on the relay
	CodeSiteMismatch       Code = 3  // Hello.Site is not the certificate's site
	CodePrefixNotGranted   Code = 4  // Hello.WantPrefix is not the site's
	CodeAddressNotGranted  Code = 5  // an address (public IPv4, flow source) is not the site's
	CodeMalformed          Code = 6  // a message did not parse
	CodeUnsupportedType    Code = 7  // an unknown critical message type
	CodeTooLarge           Code = 8  // a message body over the reader's limit
	CodeProtocolViolation  Code = 9  // a message out of sequence (FlowOpen before Welcome...)
	CodeNoResources        Code = 10 // no carrier port free
	CodeQuotaExceeded      Code = 11 // the site's flow or port quota is used up
	CodeRefused            Code = 12 // inbound policy refused the flow
	CodeNoSuchFlow         Code = 13 // the flow is not known
	CodeFlowExists         Code = 14 // the flow is already mapped to another carrier
	CodeUnsupportedProto   Code = 15 // the flow's protocol cannot be carried as asked
	CodeClosed             Code = 16 // flow closed normally (FIN/RST, host gone)
	CodeExpired            Code = 17 // flow idle past its lifetime
	CodeShutdown           Code = 18 // graceful shutdown
	CodeTimeout            Code = 19 // no answer in time (offer, Hello)
	CodeInternal           Code = 20 // a bug or a failure of the local system
)

// codeNames are the names SPEC.md gives; counters and logs use them.
var codeNames = [...]string{
	CodeOK:                 "ok",
	CodeUnsupportedVersion: "unsupported-version",
	CodeUnknownSite:        "unknown-site",
	CodeSiteMismatch:       "site-mismatch",
	CodePrefixNotGranted:   "prefix-not-granted",
	CodeAddressNotGranted:  "address-not-granted",
	CodeMalformed:          "malformed",
	CodeUnsupportedType:    "unsupported-type",
	CodeTooLarge:           "too-large",
	CodeProtocolViolation:  "protocol-violation",
	CodeNoResources:        "no-resources",
	CodeQuotaExceeded:      "quota-exceeded",
	CodeRefused:            "refused",
	CodeNoSuchFlow:         "no-such-flow",
	CodeFlowExists:         "flow-exists",
	CodeUnsupportedProto:   "unsupported-proto",
	CodeClosed:             "closed",
	CodeExpired:            "expired",
	CodeShutdown:           "shutdown",
	CodeTimeout:            "timeout",
	CodeInternal:           "internal",
}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code-%d", uint16(c))
}

func (c Code) Error() string { return "unmap: " + c.String() }

// Errors of the decoder. Every error a decoder returns wraps one of them.
var (
	ErrTruncated   = errors.New("truncated")            // a field runs past the end of the body or frame
	ErrInvalid     = errors.New("invalid value")        // a field holds a value the spec forbids
	ErrUnknownType = errors.New("unknown message type") // no decoder for the type
	ErrTooLarge    = errors.New("message too large")    // a body over the reader's limit
)

// FieldError says which field of which message failed to decode.
type FieldError struct {
	Type  Type
	Field string
	Err   error // ErrTruncated or ErrInvalid
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("proto: %v: %s: %v", e.Type, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// UnknownTypeError is returned for a type this version does not know.
// ReadMessage has consumed the body, so the stream is still in step: the
// caller skips the message if Type.Advisory(), or closes the connection
// with CodeUnsupportedType.
type UnknownTypeError struct{ Type Type }

func (e *UnknownTypeError) Error() string   { return fmt.Sprintf("proto: unknown message %v", e.Type) }
func (e *UnknownTypeError) Is(t error) bool { return t == ErrUnknownType }

// TooLargeError is returned for a frame whose declared body length is over
// the reader's limit; the body has not been read.
type TooLargeError struct {
	Type   Type
	Length int
	Max    int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("proto: %v body of %d bytes is over the limit of %d", e.Type, e.Length, e.Max)
}

func (e *TooLargeError) Is(t error) bool { return t == ErrTooLarge }

// CodeOf maps a decoder or framing error to the code to close with.
func CodeOf(err error) Code {
	var c Code
	switch {
	case err == nil:
		return CodeOK
	case errors.As(err, &c):
		return c
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrUnknownType):
		return CodeUnsupportedType
	case errors.Is(err, ErrTruncated), errors.Is(err, ErrInvalid):
		return CodeMalformed
	}
	return CodeInternal
}
