package cgnat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/unmap-dev/unmap/session/ports"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/slowpath"
	"github.com/unmap-dev/unmap/xdp"
)

// Service is the CGNAT in a running relay: the agent, the block log, the
// datapath's block events and relay_sub attached to the subscribers'
// interface.
type Service struct {
	A    *Agent
	blog RecordLog // nil in deterministic mode
	ev   *xdp.CGNATEventReader
	log  *slog.Logger
	// PM is PCP and NAT-PMP for the subscribers (portmap.go); nil
	// unless port_mapping switches one on.
	PM *PortMapper
	// resend runs relay_sub again on a miss's frame (xdp.Datapath.Resend).
	resend func(m xdp.Miss) error
}

// Start sets the CGNAT up on a datapath loaded with s.Datapath
// (xdp.Options.CGNAT): the block ports reserved from the relay's own
// ephemeral ports (a socket of the relay's auto-bound there would have its
// packets taken for a subscriber's), the block log opened, the book of
// blocks restored from the (pinned) datapath, and relay_sub attached
// through a link pinned in pinPath. ext is the relay's external
// interface: the subscribers' packets are redirected there in XDP, and
// theirs from the Internet to the subscribers' interface.
func Start(s *Settings, sp *slowpath.Datapath, pinPath, ext string, log *slog.Logger) (*Service, error) {
	d := &s.Datapath
	if err := ports.Reserve(ports.Range{First: d.PortLo, Last: uint16(int(d.PortLo) + d.PerAddr() - 1)}); err != nil {
		return nil, err
	}
	sv := &Service{log: log, resend: func(m xdp.Miss) error {
		return sp.XDP.Resend(xlat.RoleRelaySub, int(m.Ifindex), m.Data)
	}}
	fail := func(err error) (*Service, error) { return nil, errors.Join(err, sv.Close()) }
	var err error
	if s.Log != "" {
		if sv.blog, err = OpenRecordLog(s.Log); err != nil {
			return fail(err)
		}
		if IsSyslog(s.Log) {
			if err := sv.blog.Reopen(); err != nil { // connects: the relay runs on, its grants fail until it is back
				log.Warn("cgnat block log: syslog not reachable, no block is granted until it is", "err", err)
			}
		}
	}
	if sv.A, err = NewAgent(s, sp.XDP, sv.blog, log, nil); err != nil {
		return fail(err)
	}
	if sv.ev, err = sp.XDP.CGNATEvents(); err != nil {
		return fail(err)
	}
	subIf, err := sp.Attach(s.Interface, xlat.RoleRelaySub, pinPath)
	if err != nil {
		return fail(err)
	}
	ifs := []int{subIf}
	for _, name := range s.MoreInterfaces {
		i, err := sp.AttachAs(name, xlat.RoleRelaySub, pinPath, "link-relay-sub-"+name)
		if err != nil {
			return fail(err)
		}
		ifs = append(ifs, i)
	}
	extIf, err := net.InterfaceByName(ext)
	if err != nil {
		return fail(err)
	}
	for _, ifindex := range append(ifs, extIf.Index) {
		if err := sp.XDP.AddTXPort(ifindex); err != nil {
			return fail(fmt.Errorf("redirect to ifindex %d: %w", ifindex, err))
		}
	}
	if s.PortMap.On() {
		if sv.PM, err = openPortMapper(s, sv.A, sp.XDP, pinPath, log); err != nil {
			return fail(fmt.Errorf("port mapping: %w", err))
		}
	}
	log.Info("cgnat", "subscribers", d.Inside, "pool", d.PoolFirst, "addresses", d.PoolAddrs,
		"block_ports", d.BlockSize(), "blocks_an_address", d.Blocks, "quota", s.Quota, "deterministic", s.Deterministic)
	if d.NAT64() {
		log.Info("cgnat nat64", "subscribers", d.Inside6, "prefix", d.Prefix(), "interfaces", append([]string{s.Interface}, s.MoreInterfaces...))
	}
	return sv, nil
}

// Run reads block events, sweeps every EpochLength and reopens the
// block log on SIGHUP, until ctx ends.
func (sv *Service) Run(ctx context.Context) {
	go func() {
		for {
			ev, err := sv.ev.Read()
			if errors.Is(err, os.ErrClosed) || errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			if err != nil {
				sv.log.Warn("cgnat event", "err", err)
				continue
			}
			if err := sv.A.Event(ev); err != nil {
				sv.A.M.Inc(mErrGrant)
				sv.log.Warn("cgnat grant", "sub", ev.Sub, "err", err)
			}
		}
	}()
	if sv.PM != nil {
		go func() {
			if err := sv.PM.Serve(ctx); err != nil {
				sv.log.Error("port mapping", "err", err)
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(EpochLength)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = sv.ev.Close()
			return
		case <-hup:
			if sv.blog != nil {
				if err := sv.blog.Reopen(); err != nil {
					sv.log.Error("cgnat block log", "err", err)
				}
			}
		case <-t.C:
			if err := sv.A.Sweep(); err != nil {
				sv.A.M.Inc(mErrSweep)
				sv.log.Warn("cgnat sweep", "err", err)
			}
		}
	}
}

// Miss handles a miss from relay_sub (cgnat-no-block): the subscriber
// gets a block, or is marked spent, and the packet goes through relay_sub
// again, which now maps it (or answers it admin-prohibited): the first
// packet of a subscriber's flow is not lost, so a TCP SYN does not wait a
// second for its retransmission.
func (sv *Service) Miss(m xdp.Miss) {
	sub, proto, ok := MissSubscriber(m.Data)
	if !ok {
		sv.A.M.Inc(mFirstNotIP) // relay_sub hands over only IPv4, or IPv6 for NAT64, it parsed: cannot happen
		return
	}
	if err := sv.A.NoPort(sub, proto); err != nil {
		sv.A.M.Inc(mErrGrant)
		sv.log.Warn("cgnat grant", "sub", sub, "err", err)
		return // not granted: sent again it would only come back
	}
	if m.Len != len(m.Data) {
		sv.A.M.Inc(mFirstTrunc) // longer than the miss ring's copy: the sender sends it again
		return
	}
	if err := sv.resend(m); err != nil {
		sv.A.M.Inc(mFirstFailed)
		sv.log.Debug("cgnat first packet not sent", "sub", sub, "err", err)
		return
	}
	sv.A.M.Inc(mFirstResent)
}

// MissSubscriber is the subscriber a relay_sub miss (an Ethernet frame)
// is about, and the IPv4 protocol of its packet (the plane whose port
// it lacked): an IPv4 packet's source and protocol, or the /64 of an
// IPv6 one's source (NAT64) and the protocol its next header maps to
// (ICMPv6 to ICMP). ok is false for a frame too short for its IP header.
func MissSubscriber(frame []byte) (sub netip.Addr, proto uint8, ok bool) {
	const ip = 14 // the Ethernet header, then the IP one
	switch {
	case len(frame) >= ip+20 && frame[ip]>>4 == 4:
		return netip.AddrFrom4([4]byte(frame[ip+12 : ip+16])), frame[ip+9], true
	case len(frame) >= ip+40 && frame[ip]>>4 == 6:
		p, _ := netip.AddrFrom16([16]byte(frame[ip+8 : ip+24])).Prefix(64)
		proto = frame[ip+6]
		if proto == 58 {
			proto = 1 // ICMPv6 echo maps onto the ICMP plane
		}
		return p.Addr(), proto, true
	}
	return netip.Addr{}, 0, false
}

// Close closes the event reader and the log (the datapath goes on).
func (sv *Service) Close() error {
	var errs []error
	if sv.ev != nil {
		errs = append(errs, sv.ev.Close())
	}
	if sv.blog != nil {
		errs = append(errs, sv.blog.Close())
	}
	return errors.Join(errs...)
}

// Status is the relay's cgnat status section: the agent's counts and
// the subscribers holding blocks.
func (sv *Service) Status() any { return sv.A.Status() }
