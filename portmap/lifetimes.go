package portmap

import (
	"time"

	"github.com/unmap-dev/unmap/config"
)

// maxMaxLifetime bounds max_lifetime: IGDv2 caps leases at 604800 s, and
// a longer one outlives any reason a host had to ask.
const maxMaxLifetime = 7 * 24 * time.Hour

// ParseLifetimes sets p's lifetime bounds from a port_mapping section's
// min_lifetime and max_lifetime (field is the section's name; empty
// strings take the defaults), as both agents' configurations have them.
func (p *Policy) ParseLifetimes(field, minLifetime, maxLifetime string) (err error) {
	if p.MinLifetime, err = config.ParseDuration(field+".min_lifetime", minLifetime, DefaultMinLifetime, time.Second); err != nil {
		return err
	}
	if p.MaxLifetime, err = config.ParseDuration(field+".max_lifetime", maxLifetime, max(DefaultMaxLifetime, p.MinLifetime), time.Second); err != nil {
		return err
	}
	if p.MaxLifetime < p.MinLifetime {
		return config.Errorf(field+".max_lifetime", "%v is below min_lifetime (%v)", p.MaxLifetime, p.MinLifetime)
	}
	if p.MaxLifetime > maxMaxLifetime {
		return config.Errorf(field+".max_lifetime", "%v is above 168h", p.MaxLifetime)
	}
	return nil
}
