package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/cgnat"
)

// cgExplicit is the C's CG_EXPLICIT (bpf/types.h): a mapping the
// subscriber asked for, which admits any remote (session/cgnat,
// explicit.go).
const cgExplicit = 1 << 2

// MapExplicit makes subscriber k.Addr's explicit mapping of k at
// pub:port, a port of one of its blocks (the model's
// cgnat.State.MapExplicit): the port's bit is claimed in the block with
// an atomic or (the datapath may be taking ports of the same block), the
// inbound slot written whole, marked explicit, then the mapping inserted
// only if k has none. If k is mapped at pub:port already (its outbound
// flows made the mapping), that mapping is marked explicit; if at
// another port, or the port is taken, the answer is cgnat.ErrPortTaken.
func (d *Datapath) MapExplicit(k cgnat.Key, pub netip.Addr, port uint16) error {
	if !d.cg.Enabled() || d.cgBlocks == nil {
		return errNoCGNAT
	}
	if k.Addr.Is6() {
		return cgnat.ErrExplicit64
	}
	pl := cgnat.Plane(k.Proto)
	off, ok := d.cg.PoolPort(pub, port)
	si, err := d.subIndex(k.Addr)
	if err != nil {
		return err
	}
	if pl < 0 || pl > 1 || !ok {
		return fmt.Errorf("cgnat: no explicit mapping %+v at %v:%d", k, pub, port)
	}
	ck := datapathCgKey{Addr: net32(k.Addr), Port: hport(k.Port), Proto: k.Proto}
	slot := uint32(pl*d.cg.PoolPorts() + off)
	if o, ok, err := d.cgt.get(ck); err != nil {
		return err
	} else if ok {
		if cgAddr(o.Addr) != pub || hport(o.Port) != port {
			return cgnat.ErrPortTaken
		}
		return d.setExplicit(slot, k, true)
	}
	id, pos := off>>d.cg.BlockBits, off&(d.cg.BlockSize()-1)
	var s datapathCgSub
	if err := d.objs.CgSubs.Lookup(si, &s); err != nil {
		return fmt.Errorf("cgnat: subscriber %v: %w", k.Addr, err)
	}
	if !slices.Contains(s.Block[:min(s.Nblocks, cgnat.SubBlocks)], uint32(id)+1) {
		return fmt.Errorf("cgnat: %v does not hold block %d (%v:%d)", k.Addr, id, pub, port)
	}
	b := d.cgBlocks[id*cgBlockLen:]
	word := (*uint64)(unsafe.Pointer(&b[cgBitsOff+8*(pl*cgBlockWord+pos/64)]))
	used := (*uint32)(unsafe.Pointer(&b[cgUsedOff+4*pl]))
	bit := uint64(1) << (pos % 64)
	if atomic.OrUint64(word, bit)&bit != 0 {
		return cgnat.ErrPortTaken
	}
	atomic.AddUint32(used, 1)
	giveBack := func() {
		atomic.AndUint64(word, ^bit)
		atomic.AddUint32(used, ^uint32(0))
	}
	in := datapathCgIn{Addr: net32(k.Addr), Port: hport(k.Port), Flags: cgUsed | cgExplicit}
	if err := d.objs.CgSlots.Update(slot, &in, ebpf.UpdateExist); err != nil {
		giveBack()
		return fmt.Errorf("cgnat: slot of %+v: %w", k, err)
	}
	epoch, err := d.cgEpoch()
	if err != nil {
		epoch = 0
	}
	v := datapathCgOut{Addr: net32(pub), Port: hport(port), Epoch: epoch}
	if added, err := d.cgt.add(ck, v); !added {
		// A packet of k made its mapping meanwhile (or the spill is full).
		_ = d.objs.CgSlots.Update(slot, &datapathCgIn{}, ebpf.UpdateExist)
		giveBack()
		if err != nil {
			return err
		}
		return cgnat.ErrPortTaken
	}
	return nil
}

// Unexplicit turns k's explicit mapping back into an ordinary one (the
// model's cgnat.State.Unexplicit): the filtering mode applies to it again
// and its idle time starts at the current epoch.
func (d *Datapath) Unexplicit(k cgnat.Key) error {
	if !d.cg.Enabled() {
		return errNoCGNAT
	}
	if k.Addr.Is6() {
		return cgnat.ErrExplicit64
	}
	pl := cgnat.Plane(k.Proto)
	if pl < 0 || !k.Addr.Is4() {
		return fmt.Errorf("cgnat: no mapping has key %+v", k)
	}
	ck := datapathCgKey{Addr: net32(k.Addr), Port: hport(k.Port), Proto: k.Proto}
	o, ok, err := d.cgt.get(ck)
	if err != nil || !ok {
		return errors.Join(err, fmt.Errorf("cgnat: mapping %+v: %w", k, ebpf.ErrKeyNotExist))
	}
	off, ok := d.cg.PoolPort(cgAddr(o.Addr), hport(o.Port))
	if !ok {
		return fmt.Errorf("cgnat: mapping %+v outside the pool", k)
	}
	if err := d.setExplicit(uint32(pl*d.cg.PoolPorts()+off), k, false); err != nil {
		return err
	}
	epoch, err := d.cgEpoch()
	if err != nil {
		return err
	}
	return d.cgt.setEpoch(ck, epoch)
}

// setExplicit sets or clears the explicit mark of k's inbound slot. The
// datapath may OR TCP state bits into the slot meanwhile: one lost is a
// timeout of the transitory kind for an established connection, at worst.
func (d *Datapath) setExplicit(slot uint32, k cgnat.Key, on bool) error {
	var in datapathCgIn
	if err := d.objs.CgSlots.Lookup(slot, &in); err != nil {
		return fmt.Errorf("cgnat: slot of %+v: %w", k, err)
	}
	if in.Flags&cgUsed == 0 || cgAddr(in.Addr) != k.Addr || hport(in.Port) != k.Port {
		return fmt.Errorf("cgnat: slot %d is not %+v's", slot, k)
	}
	if on {
		in.Flags |= cgExplicit
	} else {
		in.Flags &^= cgExplicit
	}
	return d.objs.CgSlots.Update(slot, &in, ebpf.UpdateExist)
}

// cgEpoch is the sweep epoch the agent set last (SetCGNATEpoch).
func (d *Datapath) cgEpoch() (uint16, error) {
	var e uint32
	if err := d.objs.SwCgEpoch.Get(&e); err != nil {
		return 0, err
	}
	return uint16(e), nil
}

// CGNATMapping is mapping k, if there is one.
func (d *Datapath) CGNATMapping(k cgnat.Key) (cgnat.Out, bool, error) {
	if !d.cg.Enabled() {
		return cgnat.Out{}, false, errNoCGNAT
	}
	var o datapathCgOut
	var err error
	switch {
	case k.Addr.Is4():
		var ok bool
		o, ok, err = d.cgt.get(datapathCgKey{Addr: net32(k.Addr), Port: hport(k.Port), Proto: k.Proto})
		if err == nil && !ok {
			err = ebpf.ErrKeyNotExist
		}
	case k.Addr.Is6() && d.cg.NAT64():
		err = d.objs.CgMappings6.Lookup(ptr(key6(k)), &o)
	default:
		return cgnat.Out{}, false, nil
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return cgnat.Out{}, false, nil
	}
	if err != nil {
		return cgnat.Out{}, false, err
	}
	return cgnat.Out{Addr: cgAddr(o.Addr), Port: hport(o.Port), Epoch: o.Epoch}, true, nil
}
