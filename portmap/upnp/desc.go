package upnp

import (
	"fmt"
	"strings"
)

// Service and device types.
const (
	IGD1          = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
	IGD2          = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
	WANDevice1    = "urn:schemas-upnp-org:device:WANDevice:1"
	WANDevice2    = "urn:schemas-upnp-org:device:WANDevice:2"
	WANConnDev1   = "urn:schemas-upnp-org:device:WANConnectionDevice:1"
	WANConnDev2   = "urn:schemas-upnp-org:device:WANConnectionDevice:2"
	WANIPConn1    = "urn:schemas-upnp-org:service:WANIPConnection:1"
	WANIPConn2    = "urn:schemas-upnp-org:service:WANIPConnection:2"
	WANCommon1    = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
	WANIPv6FW1    = "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"
	RootDevice    = "upnp:rootdevice"
	SSDPAll       = "ssdp:all"
	ControlIP     = "/ctl/ipconn"
	ControlCommon = "/ctl/common"
	ControlIPv6FW = "/ctl/ip6fw"
)

// Device is one of the two root devices the server describes: the IGD v1
// for clients that look for version 1 services, v2 for the others (a
// client looks up the exact service type it searched for).
type Device struct {
	Version int    // 1 or 2
	UUID    string // uuid without the "uuid:" prefix
}

// Path is where the device's description is served.
func (d Device) Path() string { return fmt.Sprintf("/igd%d.xml", d.Version) }

// Types is every ST the device answers for, besides ssdp:all.
func (d Device) Types() []string {
	if d.Version == 1 {
		return []string{RootDevice, "uuid:" + d.UUID, IGD1, WANDevice1, WANConnDev1, WANIPConn1, WANCommon1}
	}
	return []string{RootDevice, "uuid:" + d.UUID, IGD2, WANDevice2, WANConnDev2, WANIPConn2, WANCommon1, WANIPv6FW1}
}

// USN is the unique service name of one of the device's types.
func (d Device) USN(st string) string {
	if st == "uuid:"+d.UUID {
		return st
	}
	return "uuid:" + d.UUID + "::" + st
}

// Answers lists the STs of the device a search for st is answered with.
func (d Device) Answers(st string) []string {
	if st == SSDPAll {
		return d.Types()
	}
	for _, t := range d.Types() {
		if t == st {
			return []string{st}
		}
	}
	return nil
}

// Description is the device description document.
func (d Device) Description(friendlyName string) []byte {
	v := d.Version
	var services strings.Builder
	service := func(typ, id, ctl string) {
		fmt.Fprintf(&services, "<service><serviceType>%s</serviceType><serviceId>%s</serviceId><SCPDURL>/scpd/%s.xml</SCPDURL><controlURL>%s</controlURL><eventSubURL>%s/events</eventSubURL></service>",
			typ, id, id[strings.LastIndex(id, ":")+1:], ctl, ctl)
	}
	ipConn := WANIPConn1
	if v == 2 {
		ipConn = WANIPConn2
	}
	service(ipConn, "urn:upnp-org:serviceId:WANIPConn1", ControlIP)
	if v == 2 {
		service(WANIPv6FW1, "urn:upnp-org:serviceId:WANIPv6Firewall1", ControlIPv6FW)
	}
	conn := services.String()
	services.Reset()
	service(WANCommon1, "urn:upnp-org:serviceId:WANCommonIFC1", ControlCommon)
	common := services.String()
	return fmt.Appendf(nil, `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>%d</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:%d</deviceType><friendlyName>%s</friendlyName><manufacturer>unmap</manufacturer><modelName>unmap edge</modelName><UDN>uuid:%s</UDN>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:%d</deviceType><friendlyName>WAN</friendlyName><manufacturer>unmap</manufacturer><modelName>unmap edge</modelName><UDN>uuid:%s-1</UDN>
<serviceList>%s</serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:%d</deviceType><friendlyName>WAN connection</friendlyName><manufacturer>unmap</manufacturer><modelName>unmap edge</modelName><UDN>uuid:%s-2</UDN>
<serviceList>%s</serviceList>
</device></deviceList></device></deviceList></device></root>
`, v-1, v, escape(friendlyName), d.UUID, v, d.UUID, common, v, d.UUID, conn)
}

// SCPD is a minimal service description: clients that fetch it (most do
// not) find a valid document; the actions are those the server serves.
func SCPD() []byte {
	return []byte(`<?xml version="1.0"?>
<scpd xmlns="urn:schemas-upnp-org:service-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><actionList></actionList><serviceStateTable></serviceStateTable></scpd>
`)
}
