package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/session/xlat"
)

// xdpMD is struct xdp_md as BPF_PROG_RUN takes it: where the frame's
// data lies in the buffer and the interface (and queue) it arrives on.
type xdpMD struct {
	Data, DataEnd, DataMeta uint32
	IngressIfindex          uint32
	RxQueueIndex            uint32
	EgressIfindex           uint32
}

// Resend runs role's program on frame as if it had just arrived on
// ifindex, and does what the program says for real (BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES: a redirect leaves by its interface, XDP_TX
// by ifindex, a pass goes up the stack there). It is how the agent sends
// a packet it was handed back through the datapath once what the program
// lacked is in its maps (the CGNAT's first packet of a subscriber, once
// its block is granted): the program makes the mapping and counts the
// packet, exactly as for one from the wire. The program's verdict is not
// reported (the kernel does not return it in live mode). Linux ≥ 5.18.
func (d *Datapath) Resend(role xlat.Role, ifindex int, frame []byte) error {
	p := d.Program(role)
	if p == nil {
		return fmt.Errorf("resend: no program for %v", role)
	}
	if len(frame) < 14 {
		return errors.New("resend: frame shorter than an Ethernet header")
	}
	_, err := p.Run(&ebpf.RunOptions{
		Data:    frame,
		Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Repeat:  1,
	})
	if err != nil {
		return fmt.Errorf("resend on ifindex %d: %w", ifindex, err)
	}
	return nil
}
