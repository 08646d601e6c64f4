package livegen

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/test/labtest"
	"github.com/unmap-dev/unmap/test/priv"
)

var testFlows = Flows{
	SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
	Src: netip.MustParseAddr("100.64.101.0"), Subs: 300, SPort: 1024,
	Dst: netip.MustParseAddrPort("198.51.100.10:9"), Count: 1000,
}

// TestFrames: each frame the generator makes, run once without live
// frames (so its output can be read back), is flow n of the set, 64
// bytes, with IPv4 and UDP checksums that verify (gopacket recomputes
// them and they must agree), across a subscriber and a port boundary and
// after the frame was rewritten by someone else (the NAT's page comes
// back as the NAT left it).
func TestFrames(t *testing.T) {
	priv.Require(t)
	o, err := Load(0)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	f := testFlows
	f.First = 250
	c, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.o.GenCfg.Put(uint32(0), c); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, FrameLen)
	for i := range pkt {
		pkt[i] = 0xa5 // what a NAT left: the template is written over it
	}
	for n := range uint64(1010) {
		out := make([]byte, FrameLen)
		ret, err := o.o.GenUdp.Run(&ebpf.RunOptions{Data: pkt, DataOut: out})
		if err != nil || ret != 3 {
			t.Fatalf("run %d: %d %v", n, ret, err)
		}
		want := f.Flow(f.First + n%f.Count)
		p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			t.Fatalf("frame %d: %v", n, p)
		}
		if got := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip.SrcIP.To4())), uint16(udp.SrcPort)); got != want {
			t.Fatalf("frame %d from %v, want %v", n, got, want)
		}
		if ip.DstIP.String() != "198.51.100.10" || udp.DstPort != 9 || ip.Length != FrameLen-14 || ip.TTL != 64 {
			t.Fatalf("frame %d: %v", n, p)
		}
		gotIP, gotUDP := ip.Checksum, udp.Checksum
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
			ip, udp, gopacket.Payload(udp.Payload)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if wantIP, wantUDP := binary.BigEndian.Uint16(b[10:]), binary.BigEndian.Uint16(b[26:]); gotIP != wantIP || gotUDP != wantUDP {
			t.Fatalf("frame %d: checksums %#x %#x, want %#x %#x", n, gotIP, gotUDP, wantIP, wantUDP)
		}
		pkt = out
	}
}

// TestLiveFrames: frames sent in live-frames mode out of the sub host's
// veth arrive at the relay's end, every one, and the counter counts them
// (here as "translated": the pool given is the subscribers' own range).
func TestLiveFrames(t *testing.T) {
	l := labtest.New(t, lab.Options{})
	o, err := Load(0)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	f := testFlows
	var sub, relay *net.Interface
	if err := l.NS(lab.Relay).Do(func() (err error) {
		if relay, err = net.InterfaceByName(string(lab.Sub)); err != nil {
			return err
		}
		xl, err := link.AttachXDP(link.XDPOptions{Program: o.Counter(), Interface: relay.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		t.Cleanup(func() { xl.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.SetCounting(f.Dst, f.Src, netip.MustParseAddr("100.64.102.255")); err != nil {
		t.Fatal(err)
	}
	const frames = 100_000
	var sent uint64
	if err := l.NS(lab.Sub).Do(func() (err error) {
		if sub, err = net.InterfaceByName(string(lab.Relay)); err != nil {
			return err
		}
		f.SrcMAC, f.DstMAC = sub.HardwareAddr, relay.HardwareAddr
		sent, _, _, err = o.Send(sub.Index, f, frames)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	in, other, err := o.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if sent < frames || in != sent || other != 0 {
		t.Errorf("sent %d (asked %d), counted %d in the range and %d outside", sent, frames, in, other)
	}
}
