// Package proto is unmap's control protocol: the messages the edge and the
// relay exchange over the QUIC + mutual-TLS channel (package control), their
// compact binary encoding, and versioning. SPEC.md in this folder is the
// written specification; this package is its reference implementation.
//
// Each message is one Go type with Type, Length and Append, in the style
// of quic-go's wire package; Parse decodes a body and ReadMessage /
// WriteMessage add the three-byte frame header (type, length). Decoders
// are bounded by the body they are given, check every length, and return
// errors that wrap ErrTruncated, ErrInvalid, ErrUnknownType or
// ErrTooLarge; they never panic (fuzz targets in fuzz_test.go).
//
// Result and error codes are Code values, which are errors themselves and
// double as QUIC application error codes when a connection is closed.
package proto
