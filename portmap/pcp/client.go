package pcp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Client asks one PCP server for mappings, as RFC 6887 §8.1 has a client
// do: a request, resent with doubling waits (IRT 3 s, here scaled by
// Retry) until a response with a matching opcode and nonce comes.
type Client struct {
	Conn  *net.UDPConn  // connected to the server's port 5351
	Self  netip.Addr    // the client's address as the server sees it
	Retry time.Duration // first retransmission wait; default 3 s (RFC's IRT)
}

// NewNonce draws a mapping nonce.
func NewNonce() [12]byte {
	var n [12]byte
	_, _ = rand.Read(n[:])
	return n
}

// Do sends req and returns the server's response to it.
func (c *Client) Do(ctx context.Context, req *Message) (*Message, error) {
	req.Client = c.Self
	b := req.Append(nil)
	wait := c.Retry
	if wait == 0 {
		wait = 3 * time.Second
	}
	buf := make([]byte, MaxSize+1)
	for {
		if _, err := c.Conn.Write(b); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = c.Conn.SetReadDeadline(deadline)
		for {
			n, err := c.Conn.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break
			}
			if err != nil {
				return nil, err
			}
			m, err := ParseResponse(buf[:n])
			if err != nil || m.Opcode != req.Opcode {
				continue
			}
			if req.Opcode != OpAnnounce && m.Map.Nonce != req.Map.Nonce {
				continue // another request's answer
			}
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait *= 2
	}
}

// Map asks for a mapping of the client's internal port (lifetime 0
// deletes it). The result is an error unless SUCCESS.
func (c *Client) Map(ctx context.Context, proto uint8, internal, suggested uint16, lifetime uint32, nonce [12]byte, opts func(*Message)) (*Message, error) {
	req := &Message{Opcode: OpMap, Lifetime: lifetime, Map: Map{Nonce: nonce, Protocol: proto, InternalPort: internal, ExternalPort: suggested}}
	if opts != nil {
		opts(req)
	}
	m, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if m.Result != Success {
		return m, &Error{Result: m.Result}
	}
	return m, nil
}

// Dial is a client of the server at addr, from the local address the
// route to it picks.
func Dial(addr netip.AddrPort) (*Client, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	self := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !self.IsValid() {
		c.Close()
		return nil, errors.New("pcp: no local address")
	}
	return &Client{Conn: c, Self: self}, nil
}

func (c *Client) String() string {
	return fmt.Sprintf("pcp client %v → %v", c.Self, c.Conn.RemoteAddr())
}
