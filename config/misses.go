package config

// MissLimit bounds the packets one source may hand to the agent's slow
// path: packets of flows the datapath has no entry for (a new flow's
// first packets, a carrier's first packet at the relay, time exceeded
// and ICMP errors the agent answers or relays). A source is an IPv4
// address, an IPv6 /64 from the Internet, or an IPv6 LAN host. Over the bound the datapath drops them
// (drop-miss-rate); the datapath's own defaults apply to zero fields.
type MissLimit struct {
	Rate  int `yaml:"rate"`  // misses a second after the burst; default 1000
	Burst int `yaml:"burst"` // misses at once; default 200
}

// MissBound is a MissLimit parsed: 0 means the datapath's default.
type MissBound struct{ Rate, Burst uint32 }

// Parse validates m; field is the path of m in its file.
func (m MissLimit) Parse(field string) (MissBound, error) {
	if m.Rate < 0 || m.Rate > 1e9 {
		return MissBound{}, Errorf(field+".rate", "%d is not a rate from 1 to 1000000000 a second (0: default)", m.Rate)
	}
	if m.Burst < 0 || m.Burst > 1e6 {
		return MissBound{}, Errorf(field+".burst", "%d is not a burst from 1 to 1000000 (0: default)", m.Burst)
	}
	return MissBound{Rate: uint32(m.Rate), Burst: uint32(m.Burst)}, nil
}
