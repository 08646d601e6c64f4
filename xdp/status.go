package xdp

import "github.com/unmap-dev/unmap/session/xlat"

// ReasonCounts is Reasons by name, leaving out reasons never seen: what
// `unmap status` shows of the datapath.
func (d *Datapath) ReasonCounts() (map[string]uint64, error) {
	r, err := d.Reasons()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for i, n := range r {
		if n != 0 {
			out[xlat.Reason(i).String()] = n
		}
	}
	return out, nil
}
