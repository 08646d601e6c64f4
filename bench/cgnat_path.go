package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/unmap-dev/unmap/bench/livegen"
	"github.com/unmap-dev/unmap/lab"
	"github.com/unmap-dev/unmap/xdp"
)

// The CGNAT bench's plan, the same for both paths. Subscribers are
// 512 inside addresses from 100.64.101.0 (inside 100.64.100.0/22, which
// holds the lab's sub host 100.64.100.2 too, for TCP); flow i comes from
// subscriber i mod 512, inside port 10000 + i / 512, to srv4's discard
// port, so every set of flows is a prefix of one sequence.
var (
	cgnatInside    = netip.MustParsePrefix("100.64.100.0/22")
	cgnatFirstSub  = netip.MustParseAddr("100.64.101.0")
	cgnatPoolFirst = netip.MustParseAddr("203.0.113.128") // in lab.RelayPool4, which inet routes to the relay
	cgnatDst       = netip.AddrPortFrom(lab.Srv4Addr, 9)
)

const (
	cgnatSubs     = 512
	cgnatSPort    = 10000
	cgnatPortLo   = 1024 // block ports 1024-65535 on each pool address: 126 blocks of 512
	cgnatBlocks   = (65536 - cgnatPortLo) / 512
	cgnatSubPorts = 4 * 512 // a subscriber's quota: 4 blocks of 512 (the defaults)
	// cgnatNewPorts is how many of a subscriber's ports the new-mapping
	// rounds may take: below its first block's warn level (three
	// quarters), so no new mapping waits for a grant (the agent grants
	// the next block when the warn level is reached).
	cgnatNewPorts = 383
	cgnatSinkPort = 9002 // TCP sink on srv4
)

// cgnatPool is the pool the configuration needs: enough blocks for every
// subscriber's ports at the large set and one more each (the agent
// grants the next at the warn level), the sub host's, and one more a
// subscriber for churn: a block granted at the warn level and not used
// by the next set goes back after the grace time (2 minutes) and rests
// as long before it is granted again, which a run on a loaded machine
// outlasts.
func cgnatPool(cfg CGNATConfig) (first, last netip.Addr) {
	cfg = cfg.withDefaults()
	ports := max((cfg.Large+cgnatSubs-1)/cgnatSubs, 1+cfg.Rounds*cfg.NewFlows/cgnatSubs)
	blocks := min(4, (ports+511)/512+1) + 1
	addrs := (cgnatSubs*blocks + 1 + cgnatBlocks - 1) / cgnatBlocks
	a := cgnatPoolFirst.As4()
	a[3] += byte(addrs - 1)
	return cgnatPoolFirst, netip.AddrFrom4(a)
}

// cgnatPath is one path in a lab of its own.
type cgnatPath struct {
	name  string
	cfg   CGNATConfig
	lab   *lab.Lab
	gen   *livegen.Objects
	flows livegen.Flows // MACs, subscribers, ports, destination: First and Count set per send
	subIf int           // the sub host's veth (in sub) the generator sends from
	srv   *servers      // the TCP sink on srv4
	relay *proc         // unmap: the relay agent
	pins  string        // unmap: the relay's pin path
	// pass is, on the kernel path, the XDP program on the relay's sub
	// veth while the generator runs (a veth takes XDP frames only with a
	// program of its own); nil otherwise.
	pass    link.Link
	closers []func() error
}

func (p *cgnatPath) close() error {
	var errs []error
	if p.srv != nil {
		errs = append(errs, p.srv.close())
	}
	if p.pass != nil {
		errs = append(errs, p.pass.Close())
	}
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	if p.gen != nil {
		errs = append(errs, p.gen.Close())
	}
	return errors.Join(append(errs, p.lab.Close())...)
}

// setupCGNAT builds a lab for one path and starts what it needs: the
// relay agent with a cgnat section, or the nftables rules; the counter
// on inet's veth from the relay; the TCP sink on srv4.
func setupCGNAT(ctx context.Context, cfg CGNATConfig, name, dir string) (_ *cgnatPath, err error) {
	cfg.Log("%s: building the lab", name)
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		return nil, err
	}
	p := &cgnatPath{name: name, lab: l, cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	relay := l.NS(lab.Relay)
	// The subscribers' prefix is routed to their link, as an operator
	// routes an access network's (the lab's link is a /24 of it).
	if err := relay.Do(func() error {
		sub, err := netlink.LinkByName(string(lab.Sub))
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: sub.Attrs().Index, Dst: prefixNet(cgnatInside), Scope: netlink.SCOPE_LINK})
	}); err != nil {
		return nil, fmt.Errorf("route %v to sub: %w", cgnatInside, err)
	}
	var subMAC, relayMAC net.HardwareAddr
	var relayInet int
	if err := relay.Do(func() error {
		s, err := net.InterfaceByName(string(lab.Sub))
		if err != nil {
			return err
		}
		i, err := net.InterfaceByName(string(lab.Inet))
		relayMAC = s.HardwareAddr
		if i != nil {
			relayInet = i.Index
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := l.NS(lab.Sub).Do(func() error {
		s, err := net.InterfaceByName(string(lab.Relay))
		if s != nil {
			subMAC, p.subIf = s.HardwareAddr, s.Index
		}
		return err
	}); err != nil {
		return nil, err
	}
	if p.gen, err = livegen.Load(relayInet); err != nil {
		return nil, err
	}
	p.flows = livegen.Flows{SrcMAC: subMAC, DstMAC: relayMAC, Src: cgnatFirstSub, Subs: cgnatSubs, SPort: cgnatSPort, Dst: cgnatDst}
	first, last := cgnatPool(cfg)
	if err := p.gen.SetCounting(cgnatDst, first, last); err != nil {
		return nil, err
	}
	// The counter takes the place of the lab's pass program on inet's
	// veth from the relay (where the relay's redirected frames arrive).
	xl, ok := l.PeerXDP(lab.Inet, string(lab.Relay))
	if !ok {
		return nil, errors.New("the lab has no XDP program on inet's veth from the relay")
	}
	if err := xl.Update(p.gen.Counter()); err != nil {
		return nil, fmt.Errorf("counter on inet: %w", err)
	}
	switch name {
	case CGNATUnmap:
		cfg.Log("%s: starting unmap relay with a cgnat section (pool %v-%v)", name, first, last)
		err = p.startRelay(ctx, cfg.Unmap, dir, first, last)
	case CGNATKernel:
		cfg.Log("%s: nftables snat to %v-%v", name, first, last)
		err = nftSNAT(relay, first, last)
	default:
		err = fmt.Errorf("no cgnat path %q", name)
	}
	if err != nil {
		return nil, err
	}
	// The relay learns inet's MAC before the first frame (the XDP
	// path's FIB lookup needs a neighbour).
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := relay.Ping(pctx, lab.InetRelayAddr); err != nil {
		return nil, fmt.Errorf("relay to inet: %w", err)
	}
	p.srv = &servers{streams: make(chan stream, 4)}
	if p.srv.sink, err = l.NS(lab.Srv4).Listen("tcp4", netip.AddrPortFrom(netip.IPv4Unspecified(), cgnatSinkPort).String()); err != nil {
		return nil, err
	}
	p.srv.wg.Add(1)
	go func() { defer p.srv.wg.Done(); p.srv.serveSink() }()
	return p, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// startRelay runs `unmap relay` as an operator would deploy it for its
// subscribers (relay.yaml's cgnat section with the defaults but the
// pool, its ports and the block log), and waits for its datapath.
func (p *cgnatPath) startRelay(ctx context.Context, bin, dir string, first, last netip.Addr) error {
	ca, rdir := filepath.Join(dir, "ca"), filepath.Join(dir, "relay")
	for _, args := range [][]string{
		{"cert", "ca", "--out", ca},
		{"cert", "relay", "--ca", ca, "--ip", lab.RelayAddr.String(), "--out", rdir},
	} {
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("unmap %v: %w\n%s", args, err, out)
		}
	}
	mnt := filepath.Join(dir, "bpffs")
	if err := lab.MountPins(mnt); err != nil {
		return err
	}
	p.closers = append(p.closers, func() error { return lab.UnmountPins(mnt) })
	p.pins = filepath.Join(mnt, "unmap", "relay")
	yaml := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(yaml, fmt.Appendf(nil, `listen: "%s:443"
tls: {ca: %s/ca.pem, cert: %s/relay.pem, key: %s/relay-key.pem}
interface: inet
addresses: [%s]
pin_path: %s
sites:
  - {id: bench, prefix: "%s", ipv4: 203.0.113.10}
cgnat:
  interface: sub
  inside: "%s"
  gateway: %s
  pool: "%s-%s"
  ports: %d-65535
  log: %s
`, lab.RelayAddr, rdir, rdir, rdir, lab.RelayAddr, p.pins, lab.SiteGrant, cgnatInside, lab.RelaySubAddr, first, last, cgnatPortLo,
		filepath.Join(dir, "cgnat-blocks.log")), 0o600); err != nil {
		return err
	}
	// Warn: a debug line per grant would cost the CPU the bench needs.
	relay, err := start(p.lab.NS(lab.Relay), bin, "--log-level", "warn", "relay", "-c", yaml,
		"--status-socket", filepath.Join(dir, "relay.sock"))
	if err != nil {
		return err
	}
	p.relay = relay
	p.closers = append(p.closers, relay.stop)
	// Ready when its program is on the sub link: the maps are pinned
	// before the programs load, so pins alone would also greet a relay
	// whose program the verifier is about to refuse.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(p.pins, "cg_table"))
		if id, _ := p.subProgID(); err == nil && id != 0 {
			return relay.exited() // nil while it runs
		}
		if err := relay.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the relay's CGNAT did not come up in 20 s (maps pinned and its program on the sub link); its output so far:\n%s", relay.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// subProgID is the id of the XDP program on the relay's sub link, 0 if
// none.
func (p *cgnatPath) subProgID() (id uint32, err error) {
	err = p.lab.NS(lab.Relay).Do(func() error {
		l, err := netlink.LinkByName(string(lab.Sub))
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	return id, err
}

// sent is what one send did: frames sent, what the counter saw arrive
// (translated, and not), the wall time of the sending and the sending
// thread's CPU time (livegen.Send).
type sent struct {
	frames, in, other uint64
	took, cpu         time.Duration
}

// rate is the frames that arrived translated a second of wall time, and
// a second of the sending thread's CPU.
func (s sent) rate() (wall, cpu float64) {
	if s.took > 0 {
		wall = float64(s.in) / s.took.Seconds()
	}
	if s.cpu > 0 {
		cpu = float64(s.in) / s.cpu.Seconds()
	}
	return wall, cpu
}

// send sends frames frames of the flows [first, first+count) (count 0:
// each frame a new flow from first on).
func (p *cgnatPath) send(first, count uint64, frames int) (s sent, err error) {
	if err := p.gen.Reset(); err != nil {
		return s, err
	}
	f := p.flows
	f.First, f.Count = first, count
	if err := p.lab.NS(lab.Sub).Do(func() (err error) {
		s.frames, s.took, s.cpu, err = p.gen.Send(p.subIf, f, frames)
		return err
	}); err != nil {
		return s, err
	}
	// Frames still in the veths' rings arrive a moment later: read the
	// counts once they stop moving (at most a second).
	last := ^uint64(0)
	for deadline := time.Now().Add(time.Second); ; {
		time.Sleep(20 * time.Millisecond)
		if s.in, s.other, err = p.gen.Counts(); err != nil {
			return s, err
		}
		if s.in+s.other == last || time.Now().After(deadline) {
			return s, nil
		}
		last = s.in + s.other
	}
}

// sendToSrv4 is send with the frames let through at inet and counted
// where they arrive, on srv4's veth: through inet's kernel routing,
// which bounds both paths (a figure of the lab, not of the NAT).
func (p *cgnatPath) sendToSrv4(first, count uint64, frames int) (s sent, err error) {
	sink, err := livegen.Load(0)
	if err != nil {
		return s, err
	}
	defer sink.Close()
	fp, lp := cgnatPool(p.cfg)
	if err := sink.SetCounting(cgnatDst, fp, lp); err != nil {
		return s, err
	}
	var xl link.Link
	if err := p.lab.NS(lab.Srv4).Do(func() error {
		ifi, err := net.InterfaceByName(string(lab.Inet))
		if err != nil {
			return err
		}
		xl, err = link.AttachXDP(link.XDPOptions{Program: sink.Counter(), Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		return s, fmt.Errorf("counter on srv4: %w", err)
	}
	defer xl.Close()
	if err := p.gen.SetCountingOn(cgnatDst, fp, lp); err != nil {
		return s, err
	}
	s, err = p.send(first, count, frames)
	if err := errors.Join(err, p.gen.SetCounting(cgnatDst, fp, lp)); err != nil {
		return s, err
	}
	// What srv4 saw; inet's count (s.in) is what it was given.
	in, other, err := sink.Counts()
	if err != nil {
		return s, err
	}
	s.in, s.other = in, other
	return s, nil
}

// generating puts the pass program on the kernel path's relay veth for
// the generator's frames (on/off); the unmap path has its CGNAT there.
func (p *cgnatPath) generating(on bool) error {
	if p.name != CGNATKernel {
		return nil
	}
	if !on {
		if p.pass == nil {
			return nil
		}
		err := p.pass.Close()
		p.pass = nil
		return err
	}
	if p.pass != nil {
		return nil
	}
	return p.lab.NS(lab.Relay).Do(func() error {
		ifi, err := net.InterfaceByName(string(lab.Sub))
		if err != nil {
			return err
		}
		p.pass, err = xdp.AttachPass(ifi.Index)
		return err
	})
}

// mappings is how many mappings the path's NAT holds: the relay's
// NAT44 mappings (its pinned table and spill), or the namespace's
// conntrack entries.
func (p *cgnatPath) mappings() (int, error) {
	if p.name == CGNATKernel {
		v, err := p.lab.NS(lab.Relay).Sysctl("net.netfilter.nf_conntrack_count")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(v))
	}
	return xdp.PinnedCGNATMappings(p.pins)
}
