package edge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/session/xlat"
)

// flowNotes is what the datapath's entries cannot tell a restarted agent
// about a flow: the token the relay binds its carrier by, the CGNAT's
// public side once bound, and, for a flow of the site's public IPv4, the
// public endpoint the relay knows it by (the entries hold the LAN host's
// private one). They live in a small map of the agent's own, pinned next
// to the datapath's, so they last exactly as long as the flows do.
type flowNotes struct {
	Token   proto.BindToken
	Public  netip.AddrPort // invalid: not bound yet
	Site    netip.AddrPort // the announced site endpoint if not the LAN's
	Forward bool           // an inbound port forward (holds no NAT binding)
}

// notesMapName is the pinned map's name (at most 15 characters).
const notesMapName = "edge_notes"

const notesValueSize = 48

// notesMap is the pinned notes map, keyed by the flow's LAN-side key as
// the datapath has it (xlat.Key encoding).
type notesMap struct{ m *ebpf.Map }

// openNotes opens (or makes) the notes map pinned in dir, sized like the
// flow table.
func openNotes(dir string, maxFlows uint32) (*notesMap, error) {
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: notesMapName, Type: ebpf.Hash, KeySize: xlat.KeySize, ValueSize: notesValueSize,
		MaxEntries: maxFlows, Pinning: ebpf.PinByName,
		Flags: unix.BPF_F_NO_PREALLOC, // sized for the flow table, but most sites use little of it
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, fmt.Errorf("flow notes: %w (remove the pins with `unmap edge --unpin`)", err)
	}
	return &notesMap{m: m}, nil
}

func (n *notesMap) close() error { return n.m.Close() }

func (n *notesMap) put(k xlat.Key, v flowNotes) error {
	kb, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	return n.m.Update(kb, v.marshal(), ebpf.UpdateAny)
}

func (n *notesMap) get(k xlat.Key) (flowNotes, bool) {
	kb, err := k.MarshalBinary()
	if err != nil {
		return flowNotes{}, false
	}
	vb := make([]byte, notesValueSize)
	if err := n.m.Lookup(kb, &vb); err != nil {
		return flowNotes{}, false
	}
	v, err := parseNotes(vb)
	return v, err == nil
}

func (n *notesMap) delete(k xlat.Key) {
	if kb, err := k.MarshalBinary(); err == nil {
		_ = n.m.Delete(kb)
	}
}

// Value layout: token (8, little-endian), public address (16, IPv4 as
// ::ffff:a.b.c.d), public port (2), site port (2), flags (4), site
// address (16).
const (
	noteHasPublic = 1 << iota
	noteHasSite
	noteForward
)

func (v flowNotes) marshal() []byte {
	b := make([]byte, notesValueSize)
	binary.LittleEndian.PutUint64(b[0:], uint64(v.Token))
	var flags uint32
	if v.Public.IsValid() {
		flags |= noteHasPublic
		a := v.Public.Addr().As16()
		copy(b[8:24], a[:])
		binary.LittleEndian.PutUint16(b[24:], v.Public.Port())
	}
	if v.Site.IsValid() {
		flags |= noteHasSite
		a := v.Site.Addr().As16()
		copy(b[32:48], a[:])
		binary.LittleEndian.PutUint16(b[26:], v.Site.Port())
	}
	if v.Forward {
		flags |= noteForward
	}
	binary.LittleEndian.PutUint32(b[28:], flags)
	return b
}

// parseNotes decodes a notes value, bounded by its fixed size.
func parseNotes(b []byte) (flowNotes, error) {
	if len(b) != notesValueSize {
		return flowNotes{}, fmt.Errorf("flow notes of %d bytes", len(b))
	}
	flags := binary.LittleEndian.Uint32(b[28:])
	if flags&^(noteHasPublic|noteHasSite|noteForward) != 0 {
		return flowNotes{}, errors.New("flow notes: unknown flags")
	}
	v := flowNotes{Token: proto.BindToken(binary.LittleEndian.Uint64(b)), Forward: flags&noteForward != 0}
	if flags&noteHasPublic != 0 {
		v.Public = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.LittleEndian.Uint16(b[24:]))
	}
	if flags&noteHasSite != 0 {
		v.Site = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[32:48])).Unmap(), binary.LittleEndian.Uint16(b[26:]))
	}
	return v, nil
}
