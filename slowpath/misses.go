package slowpath

import (
	"context"
	"fmt"

	"github.com/unmap-dev/unmap/xdp"
)

// ServeMisses reads the packets the datapath hands over and gives each
// to handle, one at a time, until ctx ends (nil) or the ring fails.
func (dp *Datapath) ServeMisses(ctx context.Context, handle func(xdp.Miss)) error {
	r, err := dp.XDP.Misses()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	for {
		m, err := r.Read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("misses: %w", err)
		}
		handle(m)
	}
}
