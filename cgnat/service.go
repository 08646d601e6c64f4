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
	blog *BlockLog
	ev   *xdp.CGNATEventReader
	log  *slog.Logger
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
	sv := &Service{log: log}
	fail := func(err error) (*Service, error) { return nil, errors.Join(err, sv.Close()) }
	if s.Log != "" {
		var err error
		if sv.blog, err = OpenLog(s.Log); err != nil {
			return fail(err)
		}
	}
	var err error
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
				sv.A.C.Errors.Add(1)
				sv.log.Warn("cgnat grant", "sub", ev.Sub, "err", err)
			}
		}
	}()
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
				sv.A.C.Errors.Add(1)
				sv.log.Warn("cgnat sweep", "err", err)
			}
		}
	}
}

// Miss handles a miss from relay_sub (cgnat-no-block): the subscriber
// gets a block, or is marked spent. The packet itself is not sent on:
// the subscriber's stack sends it again (a SYN after a second, an
// application's UDP retry), by then on the new block.
func (sv *Service) Miss(m xdp.Miss) {
	sub, ok := MissSubscriber(m.Data)
	if !ok {
		return
	}
	if err := sv.A.NoBlock(sub); err != nil {
		sv.A.C.Errors.Add(1)
		sv.log.Warn("cgnat grant", "sub", sub, "err", err)
	}
}

// MissSubscriber is the subscriber a relay_sub miss (an Ethernet frame)
// is about: its IPv4 source, or the /64 of its IPv6 source (NAT64).
func MissSubscriber(frame []byte) (netip.Addr, bool) {
	const src = 14 + 12 // Ethernet header, then the IPv4 source
	const src6 = 14 + 8 // or the IPv6 source
	switch {
	case len(frame) >= src+4 && frame[14]>>4 == 4:
		return netip.AddrFrom4([4]byte(frame[src : src+4])), true
	case len(frame) >= src6+16 && frame[14]>>4 == 6:
		p, _ := netip.AddrFrom16([16]byte(frame[src6 : src6+16])).Prefix(64)
		return p.Addr(), true
	}
	return netip.Addr{}, false
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
