package xdp

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// The default bound of one source's misses: a burst of 50 packets (a
// LAN's page load opening flows, a carrier's first packets), 200 a second
// after it (xdp/README.md argues the figures).
const (
	DefaultMissRate  = 200
	DefaultMissBurst = 50
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
	// dropped as drop-miss-rate), IPv4 addresses and IPv6 /64s, the
	// furthest over first, at most maxOverShown.
	Over []string `json:"over,omitempty"`
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

// missSource names a bucket's source: an IPv4 address or an IPv6 /64.
func missSource(k datapathMissSrc) string {
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:], k.Addr[0])
	binary.LittleEndian.PutUint32(b[4:], k.Addr[1])
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(b[:4])).String()
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 64).String()
}
