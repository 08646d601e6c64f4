package config

import "time"

// InboundLimits bounds what the Internet can make an agent hold for a
// site's inbound flows (flows whose first packet came from a remote):
// each holds a carrier port at the edge and at the relay for as long as
// it lives. A remote is an IPv6 /64 or an IPv4 address. Zero fields
// mean their defaults.
type InboundLimits struct {
	PerSite       int    `yaml:"per_site"`       // inbound flows of the site at once; default 4096
	PerRemote     int    `yaml:"per_remote"`     // inbound flows of one remote to the site at once; default 256
	PortShare     int    `yaml:"port_share"`     // percent of the carrier ports inbound flows may hold (the rest is kept for outbound); default 50
	UnansweredUDP string `yaml:"unanswered_udp"` // an inbound UDP flow the LAN host never answered ends after this; default 30s
}

// Defaults of InboundLimits.
const (
	DefaultInboundPerSite    = 4096
	DefaultInboundPerRemote  = 256
	DefaultInboundPortShare  = 50
	DefaultInboundUnanswered = 30 * time.Second
	minInboundUnanswered     = 5 * time.Second
)

// InboundBounds are InboundLimits parsed, defaults filled in.
type InboundBounds struct {
	PerSite, PerRemote, PortShare int
	Unanswered                    time.Duration
}

// DefaultInbound is the bounds of an empty InboundLimits.
func DefaultInbound() InboundBounds {
	return InboundBounds{PerSite: DefaultInboundPerSite, PerRemote: DefaultInboundPerRemote,
		PortShare: DefaultInboundPortShare, Unanswered: DefaultInboundUnanswered}
}

// Parse validates l; field is the path of l in its file.
func (l InboundLimits) Parse(field string) (InboundBounds, error) {
	b := DefaultInbound()
	for _, v := range []struct {
		name string
		v    int
		max  int
		to   *int
	}{
		{"per_site", l.PerSite, 1 << 20, &b.PerSite},
		{"per_remote", l.PerRemote, 1 << 20, &b.PerRemote},
		{"port_share", l.PortShare, 100, &b.PortShare},
	} {
		switch {
		case v.v == 0:
		case v.v < 0 || v.v > v.max:
			return b, Errorf(field+"."+v.name, "%d is not from 1 to %d (0: default)", v.v, v.max)
		default:
			*v.to = v.v
		}
	}
	var err error
	b.Unanswered, err = ParseDuration(field+".unanswered_udp", l.UnansweredUDP, DefaultInboundUnanswered, minInboundUnanswered)
	return b, err
}
