package bench

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/lab"
)

// cgnatTable is the kernel path's nftables table in the relay namespace.
const cgnatTable = "bench_cgnat"

// nftRules is the kernel path's ruleset as `nft list ruleset` shows it:
// what an operator writes for a CGNAT in the kernel. snat to the pool
// (not masquerade, which takes the interface's one address), persistent
// so a subscriber keeps one public address (the relay's paired pooling);
// conntrack comes with NAT.
func nftRules(first, last netip.Addr) string {
	return fmt.Sprintf(`table ip %s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%s" ip saddr %v snat to %v-%v persistent
	}
}`, cgnatTable, lab.Inet, cgnatInside, first, last)
}

// nftSNAT installs nftRules in ns, from Go (no nft program).
func nftSNAT(ns *lab.NS, first, last netip.Addr) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: cgnatTable})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &policy})
	oif := make([]byte, unix.IFNAMSIZ)
	copy(oif, lab.Inet)
	in := cgnatInside.Masked()
	mask := make([]byte, 4)
	for i := range in.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: oif},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: in.Addr().AsSlice()},
		&expr.Immediate{Register: 1, Data: first.AsSlice()},
		&expr.Immediate{Register: 2, Data: last.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 2, Persistent: true},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%s: snat to %v-%v: %w", ns.Name, first, last, err)
	}
	return nil
}
