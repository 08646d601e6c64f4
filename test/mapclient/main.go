// Command mapclient drives port mapping clients that nobody on this
// project wrote — github.com/huin/goupnp (UPnP IGD) and
// github.com/jackpal/go-nat-pmp (NAT-PMP) — for tests that run it inside
// a lab namespace as a LAN host would (an in-process client would open
// its sockets in whatever namespace its goroutines' threads are in).
// It prints one JSON object on success and exits 1 with the error
// otherwise.
//
//	mapclient natpmp-addr GATEWAY
//	mapclient natpmp-map GATEWAY udp|tcp INTERNAL EXTERNAL LIFETIME
//	mapclient upnp-addr
//	mapclient upnp-map udp|tcp INTERNAL EXTERNAL LEASE     (IGDv1 AddPortMapping, for this host)
//	mapclient upnp-any udp|tcp INTERNAL EXTERNAL LEASE     (IGDv2 AddAnyPortMapping)
//	mapclient upnp-get udp|tcp EXTERNAL                    (GetSpecificPortMappingEntry)
//	mapclient upnp-delete udp|tcp EXTERNAL
//	mapclient upnp-pinhole URL udp|tcp HOST6 PORT LEASE     (IGDv2 AddPinhole at a control point's known description URL)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	natpmp "github.com/jackpal/go-nat-pmp"
)

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "mapclient:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func num(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mapclient: not a number:", s)
		os.Exit(2)
	}
	return n
}

func run(args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch cmd, a := args[0], args[1:]; {
	case cmd == "natpmp-addr" && len(a) == 1:
		c := natpmp.NewClientWithTimeout(net.ParseIP(a[0]), 3*time.Second)
		r, err := c.GetExternalAddress()
		if err != nil {
			return nil, err
		}
		return map[string]any{"external": net.IP(r.ExternalIPAddress[:]).String(), "epoch": r.SecondsSinceStartOfEpoc}, nil
	case cmd == "natpmp-map" && len(a) == 5:
		c := natpmp.NewClientWithTimeout(net.ParseIP(a[0]), 3*time.Second)
		start := time.Now()
		r, err := c.AddPortMapping(a[1], num(a[2]), num(a[3]), num(a[4]))
		if err != nil {
			return nil, err
		}
		return map[string]any{"internal": r.InternalPort, "external": r.MappedExternalPort, "lifetime": r.PortMappingLifetimeInSeconds,
			"epoch": r.SecondsSinceStartOfEpoc, "answered_ns": time.Now().UnixNano(), "rtt_ns": time.Since(start).Nanoseconds()}, nil
	case strings.HasPrefix(cmd, "upnp-pinhole") && len(a) == 5:
		loc, err := url.Parse(a[0])
		if err != nil {
			return nil, err
		}
		cs, err := internetgateway2.NewWANIPv6FirewallControl1ClientsByURLCtx(ctx, loc)
		if err != nil || len(cs) == 0 {
			return nil, fmt.Errorf("no WANIPv6FirewallControl at %s: %v", loc, err)
		}
		proto := uint16(17)
		if a[1] == "tcp" {
			proto = 6
		}
		id, err := cs[0].AddPinholeCtx(ctx, "", 0, a[2], uint16(num(a[3])), proto, uint32(num(a[4])))
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": id}, nil
	case strings.HasPrefix(cmd, "upnp-"):
		return runUPnP(ctx, cmd, a)
	}
	return nil, fmt.Errorf("unknown command or arguments: %q", args)
}

func runUPnP(ctx context.Context, cmd string, a []string) (any, error) {
	proto := func() string { return strings.ToUpper(a[0]) }
	if cmd == "upnp-any" {
		cs, errs, err := internetgateway2.NewWANIPConnection2ClientsCtx(ctx)
		if err != nil || len(cs) == 0 {
			return nil, fmt.Errorf("no IGDv2 WANIPConnection found: %v %v", err, errs)
		}
		c := cs[0]
		if len(a) != 4 {
			return nil, errors.New("upnp-any PROTO INTERNAL EXTERNAL LEASE")
		}
		port, err := c.AddAnyPortMappingCtx(ctx, "", uint16(num(a[2])), proto(), uint16(num(a[1])), c.LocalAddr().String(), true, "mapclient", uint32(num(a[3])))
		if err != nil {
			return nil, err
		}
		return map[string]any{"external": port, "internal_client": c.LocalAddr().String()}, nil
	}
	start := time.Now()
	cs, errs, err := internetgateway2.NewWANIPConnection1ClientsCtx(ctx)
	if err != nil || len(cs) == 0 {
		return nil, fmt.Errorf("no IGDv1 WANIPConnection found: %v %v", err, errs)
	}
	c := cs[0]
	discovered := time.Since(start)
	switch {
	case cmd == "upnp-addr":
		ip, err := c.GetExternalIPAddressCtx(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]any{"external": ip, "location": c.Location.String(), "discovery_ns": discovered.Nanoseconds()}, nil
	case cmd == "upnp-map" && len(a) == 4:
		err := c.AddPortMappingCtx(ctx, "", uint16(num(a[2])), proto(), uint16(num(a[1])), c.LocalAddr().String(), true, "mapclient", uint32(num(a[3])))
		if err != nil {
			return nil, err
		}
		return map[string]any{"external": num(a[2]), "internal_client": c.LocalAddr().String(), "answered_ns": time.Now().UnixNano()}, nil
	case cmd == "upnp-get" && len(a) == 2:
		in, client, _, desc, lease, err := c.GetSpecificPortMappingEntryCtx(ctx, "", uint16(num(a[1])), proto())
		if err != nil {
			return nil, err
		}
		return map[string]any{"internal": in, "internal_client": client, "description": desc, "lease": lease}, nil
	case cmd == "upnp-delete" && len(a) == 2:
		return map[string]any{}, c.DeletePortMappingCtx(ctx, "", uint16(num(a[1])), proto())
	}
	return nil, fmt.Errorf("unknown command or arguments: %s %q", cmd, a)
}
