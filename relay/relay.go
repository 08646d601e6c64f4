// Package relay is the agent on the Internet server: it accepts edges on
// the control channel, grants them prefixes, addresses and carriers, and
// offers inbound flows to the edge that owns them.
package relay

import (
	"context"
	"errors"
)

// Run runs the relay agent until ctx ends.
func Run(ctx context.Context, s *Settings) error {
	return errors.New("relay: the agent is not built yet (issue 5); use --check to validate a config")
}
