package upnp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds of a SOAP request.
const (
	MaxSOAPSize = 8192 // bytes of the body; real requests are under 1 KiB
	maxArgs     = 16
	maxArgLen   = 256
	maxDepth    = 8
)

// Action is a SOAP call: the service type (the action element's
// namespace), the action's name and its arguments.
type Action struct {
	Service, Name string
	Args          map[string]string
}

// ParseAction reads a SOAP envelope holding one action. body must be at
// most MaxSOAPSize bytes (the server reads no more).
func ParseAction(body []byte) (*Action, error) {
	if len(body) > MaxSOAPSize {
		return nil, errors.New("soap: oversize")
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	// Entities beyond XML's five and any DTD are refused by the
	// decoder's defaults (no external entities are ever fetched).
	var a *Action
	var path []string // local names of open elements
	var arg string
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("soap: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(path) >= maxDepth {
				return nil, errors.New("soap: too deep")
			}
			path = append(path, t.Name.Local)
			switch {
			case len(path) == 1 && t.Name.Local != "Envelope", len(path) == 2 && t.Name.Local != "Body" && t.Name.Local != "Header":
				return nil, errors.New("soap: not an envelope")
			case len(path) == 3 && path[1] == "Body":
				if a != nil {
					return nil, errors.New("soap: more than one action")
				}
				a = &Action{Service: t.Name.Space, Name: t.Name.Local, Args: map[string]string{}}
			case len(path) == 4 && a != nil && path[1] == "Body":
				if len(a.Args) >= maxArgs {
					return nil, errors.New("soap: too many arguments")
				}
				arg = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if len(path) == 4 && arg != "" {
				if text.Len()+len(t) > maxArgLen {
					return nil, errors.New("soap: argument too long")
				}
				text.Write(t)
			}
		case xml.EndElement:
			if len(path) == 4 && arg != "" {
				a.Args[arg] = strings.TrimSpace(text.String())
				arg = ""
			}
			path = path[:len(path)-1]
		case xml.Directive:
			return nil, errors.New("soap: directives refused")
		}
	}
	if a == nil {
		return nil, errors.New("soap: no action")
	}
	return a, nil
}

// Arg is one output argument, in order: its name and value.
type Arg [2]string

// AppendResponse writes the envelope of action's response.
func AppendResponse(b []byte, service, action string, out []Arg) []byte {
	b = append(b, `<?xml version="1.0"?>`+"\n"+`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`...)
	b = fmt.Appendf(b, `<u:%sResponse xmlns:u="%s">`, action, escape(service))
	for _, a := range out {
		b = fmt.Appendf(b, "<%s>%s</%s>", a[0], escape(a[1]), a[0])
	}
	b = fmt.Appendf(b, `</u:%sResponse>`, action)
	return append(b, `</s:Body></s:Envelope>`...)
}

// AppendFault writes a UPnPError fault (sent with HTTP 500).
func AppendFault(b []byte, code int, desc string) []byte {
	b = append(b, `<?xml version="1.0"?>`+"\n"+`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">`...)
	b = fmt.Appendf(b, "<errorCode>%d</errorCode><errorDescription>%s</errorDescription>", code, escape(desc))
	return append(b, `</UPnPError></detail></s:Fault></s:Body></s:Envelope>`...)
}

func escape(s string) string {
	var w strings.Builder
	_ = xml.EscapeText(&w, []byte(s))
	return w.String()
}
