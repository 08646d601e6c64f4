package ports

// Inbound flows are opened by whoever on the Internet sends a first
// packet, outbound ones by the site's own hosts. An Internet host that
// opens inbound flows faster than they expire would otherwise take every
// port and leave the site's hosts none for their own connections. So
// inbound grants may hold at most a share of the ports (InboundShare):
// of the edge's range per protocol, of the relay's range per pool (relay
// address, CGNAT address, protocol), and of each site's quota; the rest
// is kept for outbound flows, which may still use all of it.

// DefaultInboundShare is the percentage of ports inbound flows may hold
// when a config leaves it zero.
const DefaultInboundShare = 50

// inboundCap is share percent of n, at least 1 (a share of zero would
// refuse every inbound flow; a config that wants none refuses them in
// its policy).
func inboundCap(n, share int) int {
	if share <= 0 {
		share = DefaultInboundShare
	}
	share = min(share, 100)
	return max(1, n*share/100)
}
