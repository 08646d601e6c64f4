package xdp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The default bound of one source's misses: a burst of 200 packets (a
// LAN host's page load opening its connections and resolving their
// names), 1000 a second after it (xdp/README.md argues the figures).
const (
	DefaultMissRate  = 1000
	DefaultMissBurst = 200
)

// missLimit is the bound of opts as the programs take it: the
// nanoseconds one token takes to come back and the whole bucket takes
// (0, 0: no limit).
func missLimit(opts Options) (tokenNS, depthNS uint64, err error) {
	if opts.NoMissLimit {
		return 0, 0, nil
	}
	rate, burst := uint64(opts.MissRate), uint64(opts.MissBurst)
	if rate == 0 {
		rate = DefaultMissRate
	}
	if burst == 0 {
		burst = DefaultMissBurst
	}
	if rate > 1e9 {
		return 0, 0, fmt.Errorf("miss rate %d a second: at most 1e9 (one a nanosecond)", rate)
	}
	tokenNS = 1e9 / rate
	return tokenNS, burst * tokenNS, nil
}

// MissStatus is the bound on each source's misses a datapath runs with,
// and the sources over it: what `unmap status` shows as "misses".
type MissStatus struct {
	Rate  uint64 `json:"rate"` // misses a second after the burst; 0: no bound
	Burst uint64 `json:"burst"`
	// Over are the sources whose bucket is empty now (their next miss is
	// dropped as drop-miss-rate), IPv4 addresses, IPv6 /64s and LAN
	// hosts' IPv6 addresses, the furthest over first, at most
	// maxOverShown.
	Over []string `json:"over,omitempty"`
	// Exempt are the IPv4 addresses whose carriers' first packets pass
	// unbound (ExemptMissSource).
	Exempt []string `json:"exempt,omitempty"`
}

// maxOverShown bounds MissStatus.Over: enough to name a flood's sources,
// short enough to read.
const maxOverShown = 32

// MissStatus reads the bound back from the loaded programs and lists
// the sources over it.
func (d *Datapath) MissStatus() (MissStatus, error) {
	var token, depth uint64
	if err := d.objs.CfgMissNs.Get(&token); err != nil {
		return MissStatus{}, err
	}
	if err := d.objs.CfgMissDepthNs.Get(&depth); err != nil {
		return MissStatus{}, err
	}
	if token == 0 {
		return MissStatus{}, nil
	}
	st := MissStatus{Rate: 1e9 / token, Burst: depth / token}
	var (
		a  uint32
		on uint8
	)
	ex := d.objs.MissExempt.Iterate()
	for ex.Next(&a, &on) {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], a)
		st.Exempt = append(st.Exempt, netip.AddrFrom4(b).String())
	}
	if err := ex.Err(); err != nil {
		return st, fmt.Errorf("miss exemptions: %w", err)
	}
	slices.Sort(st.Exempt)
	// bpf_ktime_get_ns is CLOCK_MONOTONIC.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return st, err
	}
	now := uint64(ts.Nano())
	type over struct {
		src string
		by  uint64
	}
	var all []over
	var (
		k   datapathMissSrc
		tat uint64
	)
	it := d.objs.MissSrcs.Iterate()
	for it.Next(&k, &tat) {
		// Empty: a miss now would end the bucket more than depth ahead.
		if tat > now && tat-now+token > depth {
			all = append(all, over{missSource(k), tat - now})
		}
	}
	if err := it.Err(); err != nil {
		return st, fmt.Errorf("miss buckets: %w", err)
	}
	slices.SortFunc(all, func(a, b over) int { return cmp.Compare(b.by, a.by) })
	for _, o := range all[:min(len(all), maxOverShown)] {
		st.Over = append(st.Over, o.src)
	}
	return st, nil
}

// missSource names a bucket's source: an IPv4 address, an IPv6 /64 or
// (a LAN host at the edge) an IPv6 address.
func missSource(k datapathMissSrc) string {
	var b [16]byte
	for i, w := range k.Addr {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(b[:4])).String()
	}
	if k.Bits == 128 {
		return netip.AddrFrom16(b).String()
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), int(k.Bits)).String()
}

// missSrcOf is the bucket key of a source as miss_allowed makes it.
func missSrcOf(p netip.Prefix) datapathMissSrc {
	k := datapathMissSrc{Family: 6, Bits: uint32(p.Bits())}
	a := p.Masked().Addr()
	if a.Is4() {
		k.Family = 4
	}
	b := a.AsSlice()
	for i := 0; i < len(b); i += 4 {
		k.Addr[i/4] = le32(b[i:])
	}
	return k
}

// ExemptMissSource lets carriers' first packets from IPv4 address a past
// the miss bound (on), or no longer (off): the relay's agent exempts
// the CGNAT addresses its edges' sessions come from.
func (d *Datapath) ExemptMissSource(a netip.Addr, on bool) error {
	if !a.Is4() {
		return fmt.Errorf("exempt %v from the miss bound: IPv4 addresses only", a)
	}
	b := a.As4()
	k := le32(b[:])
	if on {
		return d.objs.MissExempt.Update(k, uint8(1), ebpf.UpdateAny)
	}
	if err := d.objs.MissExempt.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}
