package lab

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// natTable is the nftables table the lab owns in a namespace; the agents
// under test keep their own tables, so neither flushes the other's rules.
const natTable = "unmap_lab"

// masquerade installs, in one transaction, "ip saddr SRC oifname OIF
// masquerade" in a postrouting NAT chain of its own table: a home router's
// NAT at the edge, the carrier-grade NAT at cgn. random selects
// random,fully-random port mapping instead of the port-preserving default.
func (n *NS) masquerade(src netip.Prefix, oif string, random bool) error {
	if !src.Addr().Is4() {
		return fmt.Errorf("masquerade %s: only IPv4 is masqueraded", src)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		return fmt.Errorf("%s: nftables: %w", n.Name, err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTable})
	ch := c.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	src = src.Masked()
	mask := net4Mask(src.Bits())
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(oif)},
		// ip saddr & mask == prefix
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: src.Addr().AsSlice()},
		&expr.Masq{Random: random, FullyRandom: random},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%s: masquerade %s out of %s: %w", n.Name, src, oif, err)
	}
	return nil
}

// ifname is an interface name as nftables compares it: NUL padded to
// IFNAMSIZ.
func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func net4Mask(bits int) []byte {
	m := make([]byte, 4)
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
