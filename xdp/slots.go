package xdp

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
)

// Carrier keys of this end (IPv4 to the carrier address, TCP/UDP/ICMP,
// destination port in the carrier range) live in the carriers array, one
// slot per local port and protocol, so the program finds them with an
// array lookup instead of a hash (bpf/lookup.h). A slot holds one key;
// another key of the same port (at the relay, R is unique only per CGNAT
// public address) goes to the flows4 hash and the slot is marked spill,
// which tells the program to look there too. A key is always in exactly
// one place: in flows4 only if its slot holds another key.
//
// The program reads a slot without a lock. The kernel writes an update
// word by word in order, and the slot's first 8 bytes (far end, used,
// spill) are one word, so: a new key is written unused first and then
// used, and a deleted key only loses its used bit, its entry stays
// behind. A reader that sees the key sees the entry that goes with it.

// slotPlanes is the protocol planes of the carriers array.
const slotPlanes = 3

// slotCount is the carriers array's size for a configuration.
func slotCount(cfg xlat.Config) uint32 {
	if !cfg.CarrierAddr.IsValid() || cfg.PortHi == 0 {
		return 1 // unused; an array has at least one slot
	}
	return slotPlanes * (uint32(cfg.PortHi) - uint32(cfg.PortLo) + 1)
}

// slotIndex is where k lives if it is a carrier key of this end: the
// rule of carrier_slot_index in bpf/lookup.h.
func (d *Datapath) slotIndex(k xlat.Key) (uint32, bool) {
	c := d.cfg
	if !k.Dst.Is4() || !c.CarrierAddr.IsValid() || k.Dst != c.CarrierAddr {
		return 0, false
	}
	if k.DPort == 0 || k.DPort < c.PortLo || k.DPort > c.PortHi {
		return 0, false
	}
	var plane uint32
	switch k.Proto {
	case 6:
		plane = 0
	case 17:
		plane = 1
	case 1:
		plane = 2
	default:
		return 0, false
	}
	return plane*(uint32(c.PortHi)-uint32(c.PortLo)+1) + uint32(k.DPort-c.PortLo), true
}

// slotOwner is the part of a carrier key the slot checks: the far end's
// address and port, as struct flow_key holds them.
func slotOwner(ck datapathFlowKey) (saddr uint32, sport uint16) {
	return ck.Saddr[0], ck.Sport
}

func (d *Datapath) readSlot(idx uint32) ([]datapathCarrierSlot, error) {
	var vals []datapathCarrierSlot
	if err := d.objs.Carriers.Lookup(idx, &vals); err != nil {
		return nil, fmt.Errorf("carrier slot %d: %w", idx, err)
	}
	return vals, nil
}

func (d *Datapath) writeSlot(idx uint32, vals []datapathCarrierSlot) error {
	if err := d.objs.Carriers.Update(idx, vals, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("carrier slot %d: %w", idx, err)
	}
	return nil
}

// owns reports whether slot s holds key ck.
func owns(s datapathCarrierSlot, ck datapathFlowKey) bool {
	a, p := slotOwner(ck)
	return s.Used == 1 && s.Saddr == a && s.Sport == p
}

// putSlot installs ck -> ce for a carrier key with slot idx.
func (d *Datapath) putSlot(idx uint32, ck datapathFlowKey, ce datapathFlowEntry, flags ebpf.MapUpdateFlags) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	vals, err := d.readSlot(idx)
	if err != nil {
		return err
	}
	s := vals[0] // used, spill and the far end are the same on every CPU
	switch {
	case owns(s, ck):
		if flags == ebpf.UpdateNoExist {
			return fmt.Errorf("carrier slot %d: %w", idx, ebpf.ErrKeyExist)
		}
		return d.writeSlot(idx, fill(vals, ck, ce, 1, s.Spill))
	case s.Spill == 1 && d.inFlows(ck):
		return d.putFlows(ck, ce, flags)
	case s.Used == 0:
		// Entry first, then the word that makes it visible.
		if err := d.writeSlot(idx, fill(vals, ck, ce, 0, s.Spill)); err != nil {
			return err
		}
		return d.writeSlot(idx, fill(vals, ck, ce, 1, s.Spill))
	}
	// The slot holds another key: this one goes to flows, and the slot
	// tells the program to look there.
	if err := d.putFlows(ck, ce, flags); err != nil {
		return err
	}
	if s.Spill == 1 {
		return nil
	}
	for i := range vals {
		vals[i].Spill = 1 // counters kept (increments during this write are lost)
	}
	return d.writeSlot(idx, vals)
}

// fill sets every CPU's slot to ck -> ce with zero counters.
func fill(vals []datapathCarrierSlot, ck datapathFlowKey, ce datapathFlowEntry, used, spill uint8) []datapathCarrierSlot {
	a, p := slotOwner(ck)
	for i := range vals {
		vals[i] = datapathCarrierSlot{Saddr: a, Sport: p, Used: used, Spill: spill, E: ce}
	}
	return vals
}

// deleteSlot removes a carrier key with slot idx.
func (d *Datapath) deleteSlot(idx uint32, ck datapathFlowKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	vals, err := d.readSlot(idx)
	if err != nil {
		return err
	}
	if owns(vals[0], ck) {
		for i := range vals {
			vals[i].Used = 0 // the entry stays: a reader that saw the key still reads it whole
		}
		return d.writeSlot(idx, vals)
	}
	if vals[0].Spill == 1 {
		return d.deleteFlows(ck)
	}
	return fmt.Errorf("carrier slot %d: %w", idx, ebpf.ErrKeyNotExist)
}

// slotCounters reads a carrier key's counters from slot idx (or flows).
func (d *Datapath) slotCounters(idx uint32, ck datapathFlowKey) (Counters, error) {
	d.mu.Lock()
	vals, err := d.readSlot(idx)
	d.mu.Unlock()
	if err != nil {
		return Counters{}, err
	}
	if owns(vals[0], ck) {
		var c Counters
		for _, v := range vals {
			c.Packets += v.E.Packets
			c.Bytes += v.E.Bytes
			c.Ended |= v.E.Flags
		}
		return c, nil
	}
	if vals[0].Spill == 1 {
		return d.flowsCounters(ck)
	}
	return Counters{}, fmt.Errorf("carrier slot %d: %w", idx, ebpf.ErrKeyNotExist)
}

func (d *Datapath) inFlows(ck datapathFlowKey) bool {
	var vals []datapathFlowEntry
	m, hk := d.hash(ck)
	return m.Lookup(hk, &vals) == nil
}
