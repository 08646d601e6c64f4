package edge

import (
	"os"
	"testing"

	"github.com/unmap-dev/unmap/config"
)

// FuzzConfig feeds arbitrary bytes to the edge.yaml parser: it must return
// settings or an error, never panic, and never accept an unusable range.
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../examples/edge.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if config.Decode(data, &c) != nil {
			return
		}
		s, err := c.Validate()
		if err != nil {
			return
		}
		if s.CarrierPorts.Len() < 64 || s.Keepalive <= 0 || s.LAN == s.WAN {
			t.Fatalf("accepted %+v", s)
		}
	})
}
