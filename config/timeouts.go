package config

import "time"

// Timeouts are the idle times after which a flow and its carrier expire.
// The minimums are the RFCs': UDP 2 min (RFC 4787 REQ-5), TCP established
// 2 h 4 min and transitory 4 min (RFC 5382 REQ-5, RFC 7857).
type Timeouts struct {
	UDP            string `yaml:"udp"`             // default 5m
	TCPEstablished string `yaml:"tcp_established"` // default 2h4m
	TCPTransitory  string `yaml:"tcp_transitory"`  // default 4m
	ICMP           string `yaml:"icmp"`            // default 60s (RFC 5508 REQ-2)
}

// Timers are Timeouts parsed.
type Timers struct {
	UDP, TCPEstablished, TCPTransitory, ICMP time.Duration
}

// Parse validates t; field is the path of t in its file.
func (t Timeouts) Parse(field string) (Timers, error) {
	var out Timers
	var err error
	if out.UDP, err = ParseDuration(field+".udp", t.UDP, 5*time.Minute, 2*time.Minute); err != nil {
		return out, err
	}
	if out.TCPEstablished, err = ParseDuration(field+".tcp_established", t.TCPEstablished, 124*time.Minute, 124*time.Minute); err != nil {
		return out, err
	}
	if out.TCPTransitory, err = ParseDuration(field+".tcp_transitory", t.TCPTransitory, 4*time.Minute, 4*time.Minute); err != nil {
		return out, err
	}
	out.ICMP, err = ParseDuration(field+".icmp", t.ICMP, time.Minute, time.Minute)
	return out, err
}
