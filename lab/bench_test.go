package lab

import (
	"context"
	"io"
	"net/netip"
	"testing"
)

// BenchmarkBuild measures a whole lab: build and teardown.
func BenchmarkBuild(b *testing.B) {
	newForTest(b, Options{}) // priv.Require, and a warm-up
	for b.Loop() {
		l, err := New(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDo measures entering a namespace for a call, against the
// baseline of running the same call on a fresh goroutine.
func BenchmarkDo(b *testing.B) {
	l := newForTest(b, Options{})
	nop := func() error { return nil }
	b.Run("goroutine", func(b *testing.B) {
		for b.Loop() {
			done := make(chan error, 1)
			go func() { done <- nop() }()
			<-done
		}
	})
	b.Run("Do", func(b *testing.B) {
		for b.Loop() {
			if err := l.NS(Edge).Do(nop); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTCPBulk measures one TCP stream into srv4: from inet (one
// routed hop, no NAT: the baseline) and from the lan host (through the
// home router's NAT and the CGN, two more hops).
func BenchmarkTCPBulk(b *testing.B) {
	l := newForTest(b, Options{})
	sink, err := l.NS(Srv4).Listen("tcp", netip.AddrPortFrom(Srv4Addr, 9).String())
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	for _, from := range []Role{Inet, LAN} {
		b.Run(string(from), func(b *testing.B) {
			c, err := l.NS(from).Dial(context.Background(), "tcp", sink.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 128<<10)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
