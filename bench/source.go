package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/unmap-dev/unmap/lab"
)

// The download direction of goodput: the lan host connects to srv6's
// source port and asks for a stream of a given length; srv6 writes until
// then and closes. The receiver times the stream, as the sink does for
// the upload, so both directions are measured the same way (from the
// first byte received to the last).

// sourcePort is srv6's TCP source for the download stream.
const sourcePort = 9003

// maxSourceStream bounds the stream length a request may ask for.
const maxSourceStream = time.Minute

// sourceRequestLen is the request's size: the stream length in
// milliseconds, big-endian.
const sourceRequestLen = 8

// Refusal reasons of the source, counted in servers.refused.
const (
	refusedSourceShort  = "goodput source: request shorter than 8 bytes"
	refusedSourceLength = "goodput source: stream length out of bounds"
)

// parseSourceRequest reads the stream length a request asks for.
func parseSourceRequest(b []byte) (time.Duration, error) {
	if len(b) != sourceRequestLen {
		return 0, errors.New(refusedSourceShort)
	}
	ms := binary.BigEndian.Uint64(b)
	if ms == 0 || ms > uint64(maxSourceStream/time.Millisecond) {
		return 0, errors.New(refusedSourceLength)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// serveSource answers each connection with a stream, one at a time:
// goodput runs one stream.
func serveSource(ln net.Listener, refused *reasons) {
	buf := make([]byte, 128<<10)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		req := make([]byte, sourceRequestLen)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, req); err != nil {
			refused.add(refusedSourceShort)
			c.Close()
			continue
		}
		d, err := parseSourceRequest(req)
		if err != nil {
			refused.add(err.Error())
			c.Close()
			continue
		}
		end := time.Now().Add(d)
		// A receiver that stops reading cannot hold the server past
		// the stream and a grace period.
		_ = c.SetWriteDeadline(end.Add(10 * time.Second))
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				break
			}
		}
		c.Close()
	}
}

// goodputDown asks srv6 for a stream of d and returns what the lan host
// received, in bit/s, from its first byte to its last.
func goodputDown(ctx context.Context, lan *lab.NS, d time.Duration) (float64, error) {
	c, err := lan.Dial(ctx, "tcp6", netip.AddrPortFrom(lab.Srv6Addr, sourcePort).String())
	if err != nil {
		return 0, fmt.Errorf("goodput down: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req := binary.BigEndian.AppendUint64(nil, uint64(d/time.Millisecond))
	if _, err := c.Write(req); err != nil {
		return 0, fmt.Errorf("goodput down: request: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(d + 15*time.Second))
	buf := make([]byte, 256<<10)
	var st stream
	for {
		n, err := c.Read(buf)
		if n > 0 {
			now := time.Now()
			if st.bytes == 0 {
				st.first = now
			}
			st.bytes += int64(n)
			st.last = now
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("goodput down: receive: %w", err)
		}
	}
	span := st.last.Sub(st.first)
	if st.bytes == 0 || span <= 0 {
		return 0, errors.New("goodput down: the lan host received nothing")
	}
	return float64(st.bytes*8) / span.Seconds(), nil
}
