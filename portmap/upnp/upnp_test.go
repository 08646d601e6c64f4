package upnp

import (
	"encoding/xml"
	"strings"
	"testing"
)

const search = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\n\r\n"

func TestParseSearch(t *testing.T) {
	s, err := ParseSearch([]byte(search))
	if err != nil || s.ST != WANIPConn1 || s.MX != 2 {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{
		"NOTIFY * HTTP/1.1\r\n\r\n",
		strings.Replace(search, `"ssdp:discover"`, "x", 1),
		strings.Replace(search, "\r\nST:", "\r\nXX:", 1),
		"M-SEARCH * HTTP/1.1\r\n" + strings.Repeat("A: b\r\n", 30) + "\r\n",
		search + strings.Repeat("x", MaxSearchSize),
	} {
		if _, err := ParseSearch([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

const addPortMapping = `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>
<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewRemoteHost></NewRemoteHost><NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>80</NewInternalPort><NewInternalClient>192.0.2.2</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>web &amp; co</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration></u:AddPortMapping>
</s:Body></s:Envelope>`

func TestParseAction(t *testing.T) {
	a, err := ParseAction([]byte(addPortMapping))
	if err != nil {
		t.Fatal(err)
	}
	if a.Service != WANIPConn1 || a.Name != "AddPortMapping" || a.Args["NewExternalPort"] != "8080" ||
		a.Args["NewPortMappingDescription"] != "web & co" || len(a.Args) != 8 {
		t.Errorf("%+v", a)
	}
	for _, bad := range []string{
		`<!DOCTYPE x [<!ENTITY a "aaaa">]>` + addPortMapping[strings.Index(addPortMapping, "<s:"):],
		strings.Replace(addPortMapping, "web &amp; co", "&xxe;", 1),
		strings.Replace(addPortMapping, "s:Body", "s:Bod", 2),
		`<s:Envelope xmlns:s="x"><s:Body></s:Body></s:Envelope>`,
		strings.Replace(addPortMapping, "web &amp; co", strings.Repeat("x", maxArgLen+1), 1),
		strings.Repeat("<a>", maxDepth+1),
		addPortMapping + strings.Repeat(" ", MaxSOAPSize),
	} {
		if _, err := ParseAction([]byte(bad)); err == nil {
			t.Errorf("accepted %.80q", bad)
		}
	}
}

// The response parses as XML with the arguments in their element.
func TestAppendResponse(t *testing.T) {
	b := AppendResponse(nil, WANIPConn1, "GetExternalIPAddress", []Arg{{"NewExternalIPAddress", "203.0.113.5"}})
	var env struct {
		Body struct {
			R struct {
				IP string `xml:"NewExternalIPAddress"`
			} `xml:"GetExternalIPAddressResponse"`
		}
	}
	if err := xml.Unmarshal(b, &env); err != nil || env.Body.R.IP != "203.0.113.5" {
		t.Errorf("%s: %v %+v", b, err, env)
	}
	if err := xml.Unmarshal(AppendFault(nil, 718, "ConflictInMappingEntry"), new(struct{})); err != nil {
		t.Error(err)
	}
	d := Device{Version: 2, UUID: "u"}
	if err := xml.Unmarshal(d.Description("a <b>"), new(struct{})); err != nil {
		t.Error(err)
	}
}

func FuzzParseSearch(f *testing.F) {
	f.Add([]byte(search))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseSearch(b) })
}

func FuzzParseAction(f *testing.F) {
	f.Add([]byte(addPortMapping))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAction(b)
		if err == nil && len(a.Args) > maxArgs {
			t.Fatalf("%d arguments", len(a.Args))
		}
	})
}
