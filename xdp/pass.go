package xdp

import (
	"fmt"

	"github.com/cilium/ebpf/link"
)

// AttachPass attaches a program that passes every packet (native mode,
// generic as a fallback). A veth accepts XDP_TX and XDP_REDIRECT frames
// from its peer only when it runs an XDP program itself (or has GRO on):
// the lab puts this one on the far ends of the agents' links, where a NIC
// on a wire would simply transmit.
func AttachPass(ifindex int) (link.Link, error) {
	var objs datapathObjects
	if err := loadDatapathObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer objs.Close()
	l, err := link.AttachXDP(link.XDPOptions{Program: objs.XdpPass, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("attach pass program to ifindex %d: %w", ifindex, err)
	}
	return l, nil
}
