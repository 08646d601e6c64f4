package relay

import (
	"time"

	"github.com/unmap-dev/unmap/session"
	"github.com/unmap-dev/unmap/session/ports"
)

// An inbound offer leases its relay port R before it asks the edge (the
// offer names it), but the edge sends nothing on it unless it accepts.
// Released to the allocator, the port of a refused offer would rest out
// the quarantine (minutes) meant for ports that carried packets, and a
// flood of refused flows would empty the carrier ports of every site
// behind the edge's CGNAT address. So the relay keeps a few such unused
// ports per site and offers them again; those not offered again within
// spareIdle go back to the allocator after all.
const (
	sparePerSite = 8
	spareIdle    = 2 * time.Second
)

type spareLease struct {
	lease ports.Lease
	at    time.Time // when its offer was refused
}

// offerLease leases R for an offer: an unused port of the site's for the
// same CGNAT address and protocol if it has one, else a new one.
func (c *agent) offerLease(ss edgeSide, cp session.Proto) (ports.Lease, error) {
	pub := publicAddr(ss).Unmap()
	b := c.inb
	b.mu.Lock()
	b.releaseSparesLocked(c.now())
	sp := b.spares[ss.Site()]
	for i := len(sp) - 1; i >= 0; i-- {
		if l := sp[i].lease; l.Public == pub && l.Proto == cp {
			b.spares[ss.Site()] = append(sp[:i], sp[i+1:]...)
			c.m.Inc(mInboundPortReused)
			b.mu.Unlock()
			return l, nil
		}
	}
	b.mu.Unlock()
	return c.ports.GrantInbound(ss.Site(), pub, cp) // within the inbound share (session/ports)
}

// spare keeps the port of an offer the edge refused, which carried no
// packet; past sparePerSite it goes back to the allocator.
func (c *agent) spare(site string, l ports.Lease) {
	b := c.inb
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.spares[site]) >= sparePerSite {
		_ = b.ports.Release(l)
		return
	}
	if b.spares == nil {
		b.spares = map[string][]spareLease{}
	}
	b.spares[site] = append(b.spares[site], spareLease{l, c.now()})
}

// releaseSpares gives the allocator the unused ports kept longer than
// spareIdle.
func (b *inboundOffers) releaseSpares(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseSparesLocked(now)
}

// releaseSparesLocked is releaseSpares; b.mu held.
func (b *inboundOffers) releaseSparesLocked(now time.Time) {
	pruneLists(b.spares, func(s spareLease) bool {
		if now.Sub(s.at) < spareIdle {
			return true
		}
		if err := b.ports.Release(s.lease); err != nil {
			b.log.Error("port release", "lease", s.lease, "err", err)
		}
		return false
	})
}
