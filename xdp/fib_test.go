package xdp

import (
	"bytes"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// xdpMd is struct xdp_md as BPF_PROG_RUN takes it for the context.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// fibStub answers the model's FIB question with a fixed outcome.
type fibStub xlat.FIBResult

func (f fibStub) Lookup([]byte) xlat.FIBResult { return xlat.FIBResult(f) }

// TestForwarding runs translated packets with the FIB switched on inside
// a namespace with real routes and neighbours: XDP_TX when the route
// leaves by the ingress port, XDP_REDIRECT through the devmap to another
// port, the stack when there is no neighbour or no devmap entry; bytes
// (MACs included) equal the model's given the same FIB outcome.
func TestForwarding(t *testing.T) {
	priv.Require(t)
	inNetns(t, func(h *netlink.Handle) {
		sysctl(t, "net/ipv4/conf/all/forwarding", "1")
		sysctl(t, "net/ipv6/conf/all/forwarding", "1")
		wan, wanPeer := veth(t, h, "wan0", "wan1")
		lan, _ := veth(t, h, "lan0", "lan1")
		for _, l := range []netlink.Link{wan, lan} {
			sysctl(t, "net/ipv6/conf/"+l.Attrs().Name+"/forwarding", "1")
			sysctl(t, "net/ipv4/conf/"+l.Attrs().Name+"/forwarding", "1")
		}
		addAddr(t, h, wan, "100.64.0.2/24")
		addAddr(t, h, lan, "2001:db8:1::1/64")
		addAddr(t, h, lan, "2001:db8:ff::1/64")
		gwMAC := net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
		addNeigh(t, h, wan, "100.64.0.1", gwMAC)
		addRoute(t, h, wan, "203.0.113.0/24", "100.64.0.1")
		// The site host's neighbour is unknown: NO_NEIGH.
		addRoute(t, h, lan, "2001:db8:2::/48", "2001:db8:ff::9")

		d, _ := loadWorld(t, xlattest.Config(xlattest.EdgeWAN), xlattest.World())
		if err := d.SetFIB(true); err != nil {
			t.Fatal(err)
		}
		wanMAC := wan.Attrs().HardwareAddr
		var six2four, four2six []byte
		for _, f := range xlattest.Fixtures() {
			switch f.Name {
			case "tcp/edge-lan/v6-to-carrier":
				six2four = f.In
			case "tcp/edge-wan/carrier-to-v6":
				four2six = f.In
			}
		}
		var mac6 [6]byte
		copy(mac6[:], gwMAC)
		var smac [6]byte
		copy(smac[:], wanMAC)
		ok := xlat.FIBResult{Code: xlat.FIBSuccess, DMAC: mac6, SMAC: smac}
		cases := []struct {
			name    string
			role    xlat.Role
			in      []byte
			ingress netlink.Link
			txport  bool
			fib     xlat.FIBResult
			reason  xlat.Reason
		}{
			{"tx: out the ingress port", xlat.RoleEdgeLAN, six2four, wan, false, withSame(ok), xlat.ReasonNone},
			{"pass: other port not in devmap", xlat.RoleEdgeLAN, six2four, lan, false, ok, xlat.ReasonPassFIB},
			{"redirect: other port in devmap", xlat.RoleEdgeLAN, six2four, lan, true, withTX(ok), xlat.ReasonNone},
			{"pass: no neighbour", xlat.RoleEdgeWAN, four2six, wan, true, xlat.FIBResult{Code: xlat.FIBNoNeigh}, xlat.ReasonPassNoNeigh},
		}
		cfg := xlattest.Config(xlattest.EdgeWAN)
		for _, c := range cases {
			if c.txport {
				if err := d.AddTXPort(wan.Attrs().Index); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := d.Reasons()
			opts := &ebpf.RunOptions{Data: c.in, DataOut: make([]byte, len(c.in)+64),
				Context: xdpMd{DataEnd: uint32(len(c.in)), IngressIfindex: uint32(c.ingress.Attrs().Index)}}
			ret, err := d.Program(c.role).Run(opts)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			want := xlat.Process(c.role, &cfg, xlattest.World(), fibStub(c.fib), append([]byte(nil), c.in...))
			if xlat.Verdict(ret) != want.Verdict || !bytes.Equal(opts.DataOut, want.Out) {
				t.Errorf("%s: xdp %v %x\nmodel %v %x", c.name, xlat.Verdict(ret), opts.DataOut, want.Verdict, want.Out)
			}
			t.Logf("%s: %v", c.name, xlat.Verdict(ret))
			after, _ := d.Reasons()
			for r := xlat.ReasonPassNotIP; r < xlat.NumReasons; r++ {
				exp := uint64(0)
				if r == c.reason {
					exp = 1
				}
				if after[r]-before[r] != exp {
					t.Errorf("%s: reason %v counted %d", c.name, r, after[r]-before[r])
				}
			}
			if c.txport {
				if err := d.objs.TxPorts.Delete(uint32(wan.Attrs().Index)); err != nil {
					t.Fatal(err)
				}
			}
		}

		// Attach to a veth: native mode, reported as such.
		l, mode, err := d.Attach(wanPeer.Attrs().Index, xlat.RoleEdgeWAN)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if mode != ModeNative {
			t.Errorf("veth attach mode %v, want native", mode)
		}
	})
}

func withSame(f xlat.FIBResult) xlat.FIBResult { f.SameIf = true; return f }
func withTX(f xlat.FIBResult) xlat.FIBResult   { f.TXPort = true; return f }
