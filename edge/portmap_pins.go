package edge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/unmap-dev/unmap/portmap"
)

// mapPins keeps the LAN hosts' port mappings in a map pinned under
// pin_path, as the flows' notes are kept (pinstate.go), so a restarted
// agent puts them back with their external ports and lifetimes: a game
// console's forwarded port survives an edge upgrade. No BPF program
// reads it.
type mapPins struct{ m *ebpf.Map }

const (
	mapPinsName      = "edge_portmaps" // at most 15 characters
	mapPinsKeySize   = 20              // proto, pad, port, address
	mapPinsValueSize = 208
	maxDescription   = 64
)

func openMapPins(dir string) (*mapPins, error) {
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: mapPinsName, Type: ebpf.Hash, KeySize: mapPinsKeySize, ValueSize: mapPinsValueSize,
		MaxEntries: maxPortMappings, Pinning: ebpf.PinByName, Flags: unix.BPF_F_NO_PREALLOC,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, fmt.Errorf("port mappings: %w (remove the pins with `unmap edge --unpin`)", err)
	}
	return &mapPins{m: m}, nil
}

func mapPinKey(m portmap.Mapping) []byte {
	k := make([]byte, mapPinsKeySize)
	k[0] = byte(m.Proto)
	binary.BigEndian.PutUint16(k[2:], m.External.Port())
	a := m.External.Addr().As16()
	copy(k[4:], a[:])
	return k
}

// encodeMapping is a mapping as pinned; ID is not kept (a restored
// mapping gets a new one).
func encodeMapping(m portmap.Mapping) []byte {
	v := make([]byte, mapPinsValueSize)
	a := m.Internal.Addr().As16()
	copy(v[0:], a[:])
	binary.BigEndian.PutUint16(v[16:], m.Internal.Port())
	v[18] = byte(m.Via)
	v[19] = byte(min(len(m.Filters), portmap.MaxFilters))
	c := m.Client.As16()
	copy(v[20:], c[:])
	copy(v[36:], m.Nonce[:])
	binary.BigEndian.PutUint64(v[48:], uint64(m.Expires.Unix()))
	for i, f := range m.Filters[:v[19]] {
		o := v[56+20*i:]
		fa := f.Remote.Addr().As16()
		copy(o, fa[:])
		bits := f.Remote.Bits()
		if f.Remote.Addr().Is4() {
			bits += 96
		}
		o[16] = byte(bits)
		binary.BigEndian.PutUint16(o[18:], f.Port)
	}
	d := m.Description
	if len(d) > maxDescription {
		d = d[:maxDescription]
	}
	v[136] = byte(len(d))
	copy(v[137:], d)
	return v
}

// decodeMapping reads a pinned mapping back; k and v are what
// mapPinKey and encodeMapping wrote, but a pin outlives the program
// that wrote it, so every field is checked.
func decodeMapping(k, v []byte) (portmap.Mapping, error) {
	if len(k) != mapPinsKeySize || len(v) != mapPinsValueSize {
		return portmap.Mapping{}, errors.New("pinned port mapping: wrong size")
	}
	addr := func(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[:16])).Unmap() }
	m := portmap.Mapping{
		Proto:    portmap.Proto(k[0]),
		External: netip.AddrPortFrom(addr(k[4:]), binary.BigEndian.Uint16(k[2:])),
		Internal: netip.AddrPortFrom(addr(v[0:]), binary.BigEndian.Uint16(v[16:])),
		Via:      portmap.Via(v[18]),
		Client:   addr(v[20:]),
		Expires:  time.Unix(int64(binary.BigEndian.Uint64(v[48:])), 0),
	}
	copy(m.Nonce[:], v[36:48])
	if int(v[19]) > portmap.MaxFilters || int(v[136]) > maxDescription {
		return portmap.Mapping{}, errors.New("pinned port mapping: bad counts")
	}
	for i := range int(v[19]) {
		o := v[56+20*i:]
		a := addr(o)
		bits := int(o[16])
		if a.Is4() {
			bits -= 96
		}
		p, err := a.Prefix(bits)
		if err != nil || bits < 0 {
			return portmap.Mapping{}, errors.New("pinned port mapping: bad filter")
		}
		m.Filters = append(m.Filters, portmap.Filter{Remote: p, Port: binary.BigEndian.Uint16(o[18:])})
	}
	m.Description = string(v[137 : 137+int(v[136])])
	if m.Proto != portmap.TCP && m.Proto != portmap.UDP || m.Via < portmap.ViaPCP || m.Via > portmap.ViaUPnP {
		return portmap.Mapping{}, errors.New("pinned port mapping: bad protocol")
	}
	return m, nil
}

func (p *mapPins) put(m portmap.Mapping) error {
	if p == nil {
		return nil
	}
	return p.m.Update(mapPinKey(m), encodeMapping(m), ebpf.UpdateAny)
}

func (p *mapPins) delete(m portmap.Mapping) {
	if p != nil {
		_ = p.m.Delete(mapPinKey(m))
	}
}

// load is every pinned mapping; entries that do not decode are removed.
func (p *mapPins) load() []portmap.Mapping {
	var out []portmap.Mapping
	var bad [][]byte
	k, v := make([]byte, mapPinsKeySize), make([]byte, mapPinsValueSize)
	it := p.m.Iterate()
	for it.Next(&k, &v) {
		m, err := decodeMapping(k, v)
		if err != nil {
			bad = append(bad, append([]byte(nil), k...))
			continue
		}
		out = append(out, m)
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
