package handshake

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	remote6 = netip.MustParseAddr("2001:db8:100::6")
	host6   = netip.MustParseAddr("2001:db8:5::1234")
	wan4    = netip.MustParseAddr("100.64.0.2")
	relay4  = netip.MustParseAddr("198.51.100.1")
)

// Options as Linux sends them on a SYN: MSS 1440, SACK permitted,
// timestamps, window scale 7.
var linuxSYNOptions = []byte{2, 4, 0x05, 0xa0, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}

func sample() Segment {
	return Segment{SrcPort: 40000, DstPort: 7, Seq: 0xfffffff0, Flags: SYN, Window: 64800, Options: linuxSYNOptions}
}

// verify decodes a built packet with gopacket, which checks the IP and
// TCP checksums against its own computation, and returns the TCP layer.
func verify(t *testing.T, pkt []byte, v4 bool) *layers.TCP {
	t.Helper()
	first := layers.LayerTypeIPv6
	if v4 {
		first = layers.LayerTypeIPv4
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil {
		t.Fatal("no TCP layer")
	}
	// Recompute with gopacket and compare the checksum it writes.
	re := *tcp
	var ipl gopacket.NetworkLayer
	if v4 {
		ip := *p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		want := ip.Checksum
		buf := gopacket.NewSerializeBuffer()
		if err := ip.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
			t.Fatal(err)
		}
		ipl = &ip
		if ip.Checksum != want {
			t.Errorf("IPv4 checksum %#04x, gopacket says %#04x", want, ip.Checksum)
		}
	} else {
		ip := *p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		ipl = &ip
	}
	if err := re.SetNetworkLayerForChecksum(ipl); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &re); err != nil {
		t.Fatal(err)
	}
	if re.Checksum != tcp.Checksum {
		t.Errorf("TCP checksum %#04x, gopacket says %#04x", tcp.Checksum, re.Checksum)
	}
	return tcp
}

func TestPacketChecksumsBothFamilies(t *testing.T) {
	s := sample()
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
	}{{"ipv6", remote6, host6}, {"ipv4", wan4, relay4}} {
		t.Run(c.name, func(t *testing.T) {
			pkt, err := Packet(c.src, c.dst, s)
			if err != nil {
				t.Fatal(err)
			}
			tcp := verify(t, pkt, c.src.Is4())
			if !tcp.SYN || tcp.ACK || tcp.Seq != s.Seq || tcp.Window != s.Window || uint16(tcp.SrcPort) != s.SrcPort || uint16(tcp.DstPort) != s.DstPort {
				t.Errorf("decoded %+v, want %+v", tcp, s)
			}
			if !bytes.Equal(tcp.Contents[20:], s.Options) {
				t.Errorf("options % x, want % x", tcp.Contents[20:], s.Options)
			}
			if c.src.Is4() && pkt[6]&0x40 == 0 {
				t.Error("IPv4 carrier segment without DF")
			}
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	s := sample()
	h, err := s.Header()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(append(h, "payload"...))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != s.Seq || got.Flags != s.Flags || got.Window != s.Window || !bytes.Equal(got.Options, s.Options) {
		t.Errorf("parsed %+v, want %+v", got, s)
	}
}

// Every truncated prefix of a header fails cleanly.
func TestParseTruncated(t *testing.T) {
	h, _ := sample().Header()
	for n := range len(h) {
		if _, err := Parse(h[:n]); !errors.Is(err, ErrShort) {
			t.Errorf("%d of %d bytes: %v, want ErrShort", n, len(h), err)
		}
	}
	bad := bytes.Clone(h)
	bad[12] = 4 << 4
	if _, err := Parse(bad); !errors.Is(err, ErrOffset) {
		t.Errorf("data offset 16: %v", err)
	}
}

func TestHeaderRefusesBadOptions(t *testing.T) {
	for _, n := range []int{3, 44} {
		if _, err := (Segment{Options: make([]byte, n)}).Header(); !errors.Is(err, ErrOptionLen) {
			t.Errorf("%d option bytes: %v", n, err)
		}
	}
}

func TestFrame(t *testing.T) {
	s := sample()
	for _, src := range []netip.Addr{remote6, wan4} {
		dst := host6
		eth := []byte{12: 0x86, 13: 0xdd}
		if src.Is4() {
			dst, eth = relay4, []byte{12: 0x08, 13: 0x00}
		}
		pkt, err := Packet(src, dst, s)
		if err != nil {
			t.Fatal(err)
		}
		frame := append(eth, pkt...)
		gs, gd, got, err := Frame(frame)
		if err != nil || gs != src || gd != dst || got.Seq != s.Seq || !bytes.Equal(got.Options, s.Options) {
			t.Errorf("%v: Frame = %v %v %+v %v", src, gs, gd, got, err)
		}
		for n := range len(frame) {
			if _, _, _, err := Frame(frame[:n]); err == nil {
				t.Errorf("%v: %d of %d bytes parsed", src, n, len(frame))
			}
		}
	}
}

func TestWindowScale(t *testing.T) {
	for _, c := range []struct {
		opts  []byte
		shift uint8
		ok    bool
	}{
		{linuxSYNOptions, 7, true},
		{[]byte{1, 1, 1, 0}, 0, false},
		{[]byte{3, 3, 20, 0}, 14, true}, // RFC 7323: larger than 14 is taken as 14
		{[]byte{2, 4, 5}, 0, false},     // truncated
		{[]byte{8, 0, 3, 3, 1}, 0, false},
		{nil, 0, false},
	} {
		if s, ok := WindowScale(c.opts); s != c.shift || ok != c.ok {
			t.Errorf("% x: %d %v, want %d %v", c.opts, s, ok, c.shift, c.ok)
		}
	}
}

func FuzzFrame(f *testing.F) {
	pkt, _ := Packet(remote6, host6, sample())
	f.Add(append([]byte{12: 0x86, 13: 0xdd}, pkt...))
	pkt4, _ := Packet(wan4, relay4, sample())
	f.Add(append([]byte{12: 0x08, 13: 0x00}, pkt4...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, s, err := Frame(b)
		if err != nil {
			return
		}
		// What parses builds again, the same.
		h, err := s.Header()
		if err != nil {
			t.Fatalf("parsed %+v does not build: %v", s, err)
		}
		again, err := Parse(h)
		if err != nil || again.Seq != s.Seq || again.Flags != s.Flags || !bytes.Equal(again.Options, s.Options) {
			t.Fatalf("rebuilt %+v, %v; want %+v", again, err, s)
		}
		WindowScale(s.Options)
	})
}

func FuzzParse(f *testing.F) {
	h, _ := sample().Header()
	f.Add(h)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if 20+len(s.Options) > len(b) || len(s.Options)%4 != 0 || len(s.Options) > 40 {
			t.Fatalf("%d option bytes from %d bytes", len(s.Options), len(b))
		}
		if _, ok := WindowScale(s.Options); ok && len(s.Options) < 3 {
			t.Fatal("a window scale from under 3 option bytes")
		}
	})
}
