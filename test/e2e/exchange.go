package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/labtest"
)

const (
	InboundTCPPort = 443  // the edge's policy lets TCP in to ports 1-1023 only
	RefusedTCPPort = 8443 // a listener the policy keeps out
	ClosedTCPPort  = 444  // allowed, but nothing listens
	ExchangeBytes  = 50 << 20
)

// UpWithPolicy is up with the edge's inbound allow rules replaced.
func UpWithPolicy(t *testing.T, mode lab.CGNMode, allow string) Running {
	t.Helper()
	u := Running{Lab: labtest.New(t, lab.Options{CGNMode: mode, CGNUDPTimeout: 30 * time.Second})}
	u.D = Deploy(t, lab.BuildUnmap(t))
	b, err := os.ReadFile(u.D.EdgeConfig)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), "  allow:\n")
	if !ok {
		t.Fatal("edge.yaml has no allow rules to replace")
	}
	if err := os.WriteFile(u.D.EdgeConfig, []byte(head+"  allow:\n"+allow), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Relay = u.D.StartRelay(t, u.Lab)
	u.D.StartEdge(t, u.Lab)
	u.D.DumpOnFailure(t)
	u.Session = Section(t, u.D.EdgeS, "session", "the edge's session", func(s EdgeSession) bool { return s.Connected })
	u.Host = WaitAddr(t, u.Lab.NS(lab.LAN), lab.SitePrefix)
	return u
}

// ExchangeN writes the seeded stream `send` and reads the stream `recv`
// at once, size bytes each, and checks what it read hashes as the stream
// should.
func ExchangeN(ctx context.Context, c net.Conn, send, recv uint64, size int64) error {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.LimitReader(stream(send), size))
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			err = tc.CloseWrite()
		}
		werr <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", n, err)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(stream(recv), size))
	if n != size || string(got.Sum(nil)) != string(want.Sum(nil)) {
		return fmt.Errorf("read %d bytes, hash %x; want %d bytes, hash %x", n, got.Sum(nil), size, want.Sum(nil))
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// stream is an endless seeded byte stream.
type streamReader struct{ r *rand.ChaCha8 }

func stream(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return streamReader{rand.NewChaCha8(s)}
}

func (s streamReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// ExchangeOver is exchangeThrough on a listener already open at to.
func ExchangeOver(ctx context.Context, ln net.Listener, client *lab.NS, to netip.AddrPort) (time.Duration, error) {
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		served <- ExchangeN(ctx, c, 4, 3, ExchangeBytes)
	}()
	start := time.Now()
	c, err := client.Dial(ctx, ln.Addr().Network(), to.String())
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	connect := time.Since(start)
	err = ExchangeN(ctx, c, 3, 4, ExchangeBytes)
	c.Close()
	if serr := <-served; err != nil || serr != nil {
		return connect, fmt.Errorf("exchange: client %v, server %v", err, serr)
	}
	return connect, nil
}
