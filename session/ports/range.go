package ports

import (
	"fmt"
	"strconv"
)

// Range is an inclusive range of ports; the configs' port ranges
// (config.PortRange) are this type.
type Range struct{ First, Last uint16 }

// Len is the number of ports in r.
func (r Range) Len() int { return int(r.Last) - int(r.First) + 1 }

// Contains reports whether p is in r.
func (r Range) Contains(p uint16) bool { return p >= r.First && p <= r.Last }

// Overlaps reports whether r and o share a port.
func (r Range) Overlaps(o Range) bool { return r.First <= o.Last && o.First <= r.Last }

// Check refuses port 0 (it means "any" to the kernel) and a range that
// ends before it starts.
func (r Range) Check() error {
	if r.First == 0 || r.First > r.Last {
		return fmt.Errorf("port range %v: want 1 <= first <= last", r)
	}
	return nil
}

func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}
