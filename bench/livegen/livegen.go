package livegen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// FrameLen is the size of every frame the generator sends: a 64-byte
// Ethernet frame as a benchmark counts it (14 + 20 + 8 header bytes and
// 22 of payload; no FCS on a veth).
const FrameLen = 64

// Objects are the generator, the counter and the floor's redirect,
// loaded once; a lab's namespaces share them (BPF objects belong to no
// namespace, the interfaces they are given do).
type Objects struct{ o livegenObjects }

// Load loads the programs; fwd redirects to fwdIfindex (0: fwd unused).
func Load(fwdIfindex int) (*Objects, error) {
	spec, err := loadLivegen()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["fwd_ifindex"].Set(uint32(fwdIfindex)); err != nil {
		return nil, err
	}
	var o Objects
	if err := spec.LoadAndAssign(&o.o, nil); err != nil {
		return nil, fmt.Errorf("load the bench generator: %w", err)
	}
	return &o, nil
}

// Close releases the programs and maps (attached links keep theirs).
func (o *Objects) Close() error { return o.o.Close() }

// Counter is the program that counts arriving bench packets (attach it
// on the NAT's next hop); Fwd the floor's redirect.
func (o *Objects) Counter() *ebpf.Program { return o.o.Count }
func (o *Objects) Fwd() *ebpf.Program     { return o.o.Fwd }

// FwdFIB redirects after a FIB lookup, as a router in XDP does.
func (o *Objects) FwdFIB() *ebpf.Program { return o.o.FwdFib }

// Gen is the generator's program (for its run-time statistics).
func (o *Objects) Gen() *ebpf.Program { return o.o.GenUdp }

// Flows says which UDP flows the generator sends. Flow i comes from
// subscriber Src + i mod Subs, port SPort + i / Subs, to Dst: a set of
// flows is a prefix of the same sequence, so the flows of a smaller run
// are part of every larger one.
type Flows struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src            netip.Addr // the first subscriber
	Subs           int
	SPort          uint16
	Dst            netip.AddrPort
	// First is the first flow sent; Count the flows cycled from it
	// (flow First + n mod Count for the nth frame), or 0 for a new flow
	// every frame (First + n).
	First, Count uint64
}

// Flow is the source of flow i.
func (f Flows) Flow(i uint64) netip.AddrPort {
	subs := uint64(max(f.Subs, 1))
	a := f.Src.As4()
	s := binary.BigEndian.Uint32(a[:]) + uint32(i%subs)
	binary.BigEndian.PutUint32(a[:], s)
	return netip.AddrPortFrom(netip.AddrFrom4(a), f.SPort+uint16(i/subs))
}

// template is the frame with source address, port and both checksums
// zero: the program fills them in.
func (f Flows) template() [FrameLen]byte {
	var h [FrameLen]byte
	copy(h[0:6], f.DstMAC)
	copy(h[6:12], f.SrcMAC)
	binary.BigEndian.PutUint16(h[12:], unix.ETH_P_IP)
	ip := h[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], FrameLen-14)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	d := f.Dst.Addr().As4()
	copy(ip[16:20], d[:])
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(udp[4:], FrameLen-14-20)
	return h
}

func (f Flows) config() (livegenGenConfig, error) {
	if !f.Src.Is4() || !f.Dst.Addr().Is4() || len(f.SrcMAC) != 6 || len(f.DstMAC) != 6 || f.Subs < 1 {
		return livegenGenConfig{}, fmt.Errorf("livegen: bad flows %+v", f)
	}
	src := f.Src.As4()
	return livegenGenConfig{Frame: f.template(), SrcBase: binary.BigEndian.Uint32(src[:]), Subs: uint32(f.Subs),
		SportBase: uint32(f.SPort), First: f.First, Flows: f.Count}, nil
}

// xdpMD is the kernel's struct xdp_md as BPF_PROG_RUN takes it: only
// the interface the frames enter on is set.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// chunk is the frames asked of one BPF_PROG_RUN call: a signal makes
// the kernel stop a call and cilium/ebpf start it again from zero, so a
// call is kept short enough that a restart costs little.
const chunk = 1 << 16

// Send sends frames frames of f out of ifindex (which must have an XDP
// program attached, and its peer too) and returns the frames the program
// made, the wall time it took and the CPU time of the sending thread.
// The frames' way through the veths and whatever XDP and stack work
// they cause runs in softirq on the sending CPU at the end of each batch,
// and this kernel's tick-based accounting charges that to the thread
// (unless it overflows to ksoftirqd): the CPU time is the chain's cost
// without the time other work on the machine took the CPU away. Call it
// on a thread inside the interface's namespace (lab.NS.Do, which locks
// the thread): the kernel finds ifindex there.
func (o *Objects) Send(ifindex int, f Flows, frames int) (sent uint64, took, cpu time.Duration, err error) {
	c, err := f.config()
	if err != nil {
		return 0, 0, 0, err
	}
	if err := o.o.GenCfg.Put(uint32(0), c); err != nil {
		return 0, 0, 0, err
	}
	if err := o.o.GenSent.Put(uint32(0), uint64(0)); err != nil {
		return 0, 0, 0, err
	}
	pkt := c.Frame[:]
	cpu0, err := threadCPU()
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	for left := frames; left > 0; left -= chunk {
		// The return value means nothing in live-frames mode: what was
		// sent is what gen_sent counted.
		_, err := o.o.GenUdp.Run(&ebpf.RunOptions{
			Data: pkt, Repeat: uint32(min(left, chunk)), Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: &xdpMD{DataEnd: FrameLen, IngressIfindex: uint32(ifindex)},
		})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("live frames on ifindex %d: %w", ifindex, err)
		}
	}
	took = time.Since(start)
	cpu1, err := threadCPU()
	if err != nil {
		return 0, 0, 0, err
	}
	if err := o.o.GenSent.Lookup(uint32(0), &sent); err != nil {
		return 0, 0, 0, err
	}
	return sent, took, cpu1 - cpu0, nil
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// SetCounting says what the counter counts: UDP to dst, translated when
// its source is in pool (first..last), dropped there either way.
func (o *Objects) SetCounting(dst netip.AddrPort, first, last netip.Addr) error {
	return o.setCounting(dst, first, last, false)
}

// SetCountingOn is SetCounting, but the counted frames go on (to a
// second counter further on) instead of being dropped.
func (o *Objects) SetCountingOn(dst netip.AddrPort, first, last netip.Addr) error {
	return o.setCounting(dst, first, last, true)
}

func (o *Objects) setCounting(dst netip.AddrPort, first, last netip.Addr, pass bool) error {
	if !dst.Addr().Is4() || !first.Is4() || !last.Is4() {
		return errors.New("livegen: counting is IPv4")
	}
	d, lo, hi := dst.Addr().As4(), first.As4(), last.As4()
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], dst.Port())
	return o.o.CountCfg.Put(uint32(0), livegenCountConfig{
		Dst: binary.NativeEndian.Uint32(d[:]), PoolLo: binary.BigEndian.Uint32(lo[:]),
		PoolHi: binary.BigEndian.Uint32(hi[:]), Dport: binary.NativeEndian.Uint16(port[:]), Pass: b2u(pass)})
}

func b2u(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// Counts are the bench packets the counter saw since the last Reset:
// translated (source in the pool) and not.
func (o *Objects) Counts() (translated, other uint64, err error) {
	for k, to := range []*uint64{&translated, &other} {
		var per []uint64
		if err := o.o.Counts.Lookup(uint32(k), &per); err != nil {
			return 0, 0, err
		}
		for _, v := range per {
			*to += v
		}
	}
	return translated, other, nil
}

// Reset zeroes the counts.
func (o *Objects) Reset() error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	for k := range uint32(2) {
		if err := o.o.Counts.Put(k, make([]uint64, n)); err != nil {
			return err
		}
	}
	return nil
}
