package cgnat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/portmap"
	"github.com/unmap-dev/unmap/session/cgnat"
)

// mapPins keeps the subscribers' explicit mappings' own facts (who asked
// by which protocol, the PCP nonce, until when, and whether an implicit
// mapping was there first) in a map pinned beside the datapath's, so a
// restarted relay puts them back in its table: the datapath's pinned
// maps keep the mappings themselves working meanwhile. No BPF program
// reads it.
type mapPins struct{ m *ebpf.Map }

const (
	mapPinsName      = "cg_portmaps" // at most 15 characters
	mapPinsKeySize   = 8             // subscriber address, port, protocol, pad
	mapPinsValueSize = 32
	pinImplicit      = 1 // flags: an implicit mapping was there first
)

// openMapPins opens (or makes) the pinned map in dir. Its size is the
// largest total allowed, allocated as used, so a change of total keeps
// the pins.
func openMapPins(dir string) (*mapPins, error) {
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: mapPinsName, Type: ebpf.Hash, KeySize: mapPinsKeySize, ValueSize: mapPinsValueSize,
		MaxEntries: maxPortMapTotal, Pinning: ebpf.PinByName, Flags: unix.BPF_F_NO_PREALLOC,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, fmt.Errorf("port mappings: %w (remove the pins with `unmap relay --unpin`)", err)
	}
	return &mapPins{m: m}, nil
}

func pinKey(k cgnat.Key) []byte {
	b := make([]byte, mapPinsKeySize)
	a := k.Addr.As4()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[4:], k.Port)
	b[6] = k.Proto
	return b
}

func encodePin(m portmap.Mapping, implicit bool) []byte {
	v := make([]byte, mapPinsValueSize)
	a := m.External.Addr().As4()
	copy(v, a[:])
	binary.BigEndian.PutUint16(v[4:], m.External.Port())
	v[6] = byte(m.Via)
	if implicit {
		v[7] = pinImplicit
	}
	copy(v[8:20], m.Nonce[:])
	binary.BigEndian.PutUint64(v[24:], uint64(m.Expires.Unix()))
	return v
}

// decodePin reads a pinned mapping back. A pin outlives the program
// that wrote it: every field is checked.
func decodePin(k, v []byte) (portmap.Mapping, bool, error) {
	if len(k) != mapPinsKeySize || len(v) != mapPinsValueSize {
		return portmap.Mapping{}, false, errors.New("pinned port mapping: wrong size")
	}
	sub := netip.AddrFrom4([4]byte(k[:4]))
	m := portmap.Mapping{
		Proto:    portmap.Proto(k[6]),
		Internal: netip.AddrPortFrom(sub, binary.BigEndian.Uint16(k[4:])),
		Client:   sub,
		External: netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[:4])), binary.BigEndian.Uint16(v[4:])),
		Via:      portmap.Via(v[6]),
		Expires:  time.Unix(int64(binary.BigEndian.Uint64(v[24:])), 0),
	}
	copy(m.Nonce[:], v[8:20])
	if m.Proto != portmap.TCP && m.Proto != portmap.UDP || m.Via != portmap.ViaPCP && m.Via != portmap.ViaNATPMP || v[7]&^pinImplicit != 0 {
		return portmap.Mapping{}, false, errors.New("pinned port mapping: bad fields")
	}
	return m, v[7]&pinImplicit != 0, nil
}

func (p *mapPins) put(m portmap.Mapping, implicit bool) error {
	if p == nil {
		return nil
	}
	return p.m.Update(pinKey(keyOf(m)), encodePin(m, implicit), ebpf.UpdateAny)
}

func (p *mapPins) delete(k cgnat.Key) {
	if p != nil {
		_ = p.m.Delete(pinKey(k))
	}
}

// pinned is one pinned mapping.
type pinned struct {
	m        portmap.Mapping
	implicit bool
}

// load is every pinned mapping; entries that do not decode are removed.
func (p *mapPins) load() []pinned {
	if p == nil {
		return nil
	}
	var out []pinned
	var bad [][]byte
	k, v := make([]byte, mapPinsKeySize), make([]byte, mapPinsValueSize)
	it := p.m.Iterate()
	for it.Next(&k, &v) {
		m, implicit, err := decodePin(k, v)
		if err != nil {
			bad = append(bad, append([]byte(nil), k...))
			continue
		}
		out = append(out, pinned{m, implicit})
	}
	for _, b := range bad {
		_ = p.m.Delete(b)
	}
	return out
}

func (p *mapPins) close() error {
	if p == nil {
		return nil
	}
	return p.m.Close()
}
