package lab

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// blockTable holds the lab's outage rules, apart from its NAT rules.
const blockTable = "unmap_lab_block"

// BlockUDPPort drops, in the namespace's forward path, every IPv4 UDP
// packet to or from port: an outage of one service (the control channel)
// while everything else flows. The returned func lifts it.
func (n *NS) BlockUDPPort(port uint16) (unblock func() error, err error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		return nil, fmt.Errorf("%s: nftables: %w", n.Name, err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: blockTable})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	p := binary.BigEndian.AppendUint16(nil, port)
	for _, off := range []uint32{0, 2} { // source port, destination port
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("%s: block UDP port %d: %w", n.Name, port, err)
	}
	return func() error {
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("%s: unblock UDP port %d: %w", n.Name, port, err)
		}
		return nil
	}, nil
}
