package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// handshake runs a TLS handshake over a Unix socket pair (kernel
// buffers, so both sides may write at once as TLS 1.3 resumption does;
// no network and no namespace involved) and returns both sides' errors
// and the server's view of the connection.
func handshake(t *testing.T, server, client *tls.Config) (cs tls.ConnectionState, serr, cerr error) {
	t.Helper()
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := tls.Client(b, client)
		cerr = c.Handshake()
		if cerr == nil {
			// In TLS 1.3 the client finishes before the server has
			// checked its certificate; read to take the server's alert
			// or its session tickets.
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				cerr = err
			}
		}
	}()
	s := tls.Server(a, server)
	serr = s.Handshake()
	<-done
	return s.ConnectionState(), serr, cerr
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type fixture struct {
	ca, other    *CA
	relay, edge  *Identity
	refused      []Reason
	serverConfig *tls.Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{}
	var err error
	if f.ca, err = NewCA("test CA", Validity{}); err != nil {
		t.Fatal(err)
	}
	if f.other, err = NewCA("other CA", Validity{}); err != nil {
		t.Fatal(err)
	}
	if f.relay, err = f.ca.IssueRelay([]string{"relay.example"}, []netip.Addr{netip.MustParseAddr("198.51.100.6")}, Validity{}); err != nil {
		t.Fatal(err)
	}
	if f.edge, err = f.ca.IssueEdge("home", Validity{}); err != nil {
		t.Fatal(err)
	}
	f.serverConfig = ServerConfig(f.relay.TLS(), f.ca.Pool(), ServerOptions{
		NextProtos: []string{"unmap/1"},
		Refused:    func(e *RefusedError) { f.refused = append(f.refused, e.Reason) },
	})
	return f
}

func (f *fixture) client(id *Identity, name string) *tls.Config {
	var certs tls.Certificate
	if id != nil {
		certs = id.TLS()
	}
	c := ClientConfig(certs, f.ca.Pool(), ClientOptions{ServerName: name, NextProtos: []string{"unmap/1"}})
	if id == nil {
		c.Certificates = nil
	}
	return c
}

func TestHandshakeIssueVerify(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"relay.example", "198.51.100.6"} {
		cs, serr, cerr := handshake(t, f.serverConfig, f.client(f.edge, name))
		if serr != nil || cerr != nil {
			t.Fatalf("%s: server %v, client %v", name, serr, cerr)
		}
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", cs.Version)
		}
		site, err := PeerSite(cs)
		if err != nil || site != "home" {
			t.Errorf("PeerSite = %q, %v; want home", site, err)
		}
	}
	if len(f.refused) != 0 {
		t.Errorf("refusals counted on success: %v", f.refused)
	}
}

// TestServerRefuses checks each way a client certificate is refused gets
// its own reason, reaches the Refused hook once, and fails the handshake.
func TestServerRefuses(t *testing.T) {
	f := newFixture(t)
	past := time.Now().Add(-48 * time.Hour)
	expired, err := f.ca.IssueEdge("home", Validity{NotBefore: past, Length: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	future, err := f.ca.IssueEdge("home", Validity{NotBefore: time.Now().Add(time.Hour), Length: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := f.other.IssueEdge("home", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	noSite := issueRaw(t, f.ca, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
	badSite := issueRaw(t, f.ca, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		c.URIs = append(c.URIs, SiteURI("Not_A_Site"))
	})
	for _, tc := range []struct {
		name string
		id   *Identity
		want Reason
	}{
		{"expired", expired, ReasonExpired},
		{"not yet valid", future, ReasonExpired},
		{"other CA", stranger, ReasonUnknownCA},
		{"relay cert as client", f.relay, ReasonUsage},
		{"no site id", noSite, ReasonNoSite},
		{"bad site id", badSite, ReasonNoSite},
		{"no certificate", nil, ReasonNoCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.refused = nil
			_, serr, _ := handshake(t, f.serverConfig, f.client(tc.id, "relay.example"))
			if serr == nil {
				t.Fatal("handshake succeeded")
			}
			var re *RefusedError
			if !errors.As(serr, &re) || re.Reason != tc.want {
				t.Fatalf("server error %v, want reason %s", serr, tc.want)
			}
			if len(f.refused) != 1 || f.refused[0] != tc.want {
				t.Errorf("Refused hook saw %v, want [%s]", f.refused, tc.want)
			}
		})
	}
}

// TestClientRefuses checks the edge refuses a relay that is not ours.
func TestClientRefuses(t *testing.T) {
	f := newFixture(t)
	fake, err := f.other.IssueRelay([]string{"relay.example"}, nil, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := f.ca.IssueRelay([]string{"relay.example"}, nil, Validity{NotBefore: time.Now().Add(-48 * time.Hour), Length: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clientOnly := issueRaw(t, f.ca, func(c *x509.Certificate) {
		c.DNSNames = []string{"relay.example"}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	for _, tc := range []struct {
		name   string
		server *Identity
		dial   string
		want   Reason
	}{
		{"other CA", fake, "relay.example", ReasonUnknownCA},
		{"expired", expired, "relay.example", ReasonExpired},
		{"wrong name", f.relay, "elsewhere.example", ReasonWrongName},
		{"client-only cert as server", clientOnly, "relay.example", ReasonUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := ServerConfig(tc.server.TLS(), f.ca.Pool(), ServerOptions{})
			_, _, cerr := handshake(t, srv, f.client(f.edge, tc.dial))
			if cerr == nil {
				t.Fatal("client accepted the relay")
			}
			if got := Classify(cerr); got != tc.want {
				t.Errorf("Classify(%v) = %s, want %s", cerr, got, tc.want)
			}
		})
	}
}

func TestTLS13Only(t *testing.T) {
	f := newFixture(t)
	c := f.client(f.edge, "relay.example")
	c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	_, serr, cerr := handshake(t, f.serverConfig, c)
	if serr == nil || cerr == nil {
		t.Fatalf("TLS 1.2 client accepted: server %v, client %v", serr, cerr)
	}
}

// TestInjectedClock checks the server's clock option decides validity.
func TestInjectedClock(t *testing.T) {
	f := newFixture(t)
	var got []Reason
	later := func() time.Time { return f.edge.Cert.NotAfter.Add(time.Minute) }
	srv := ServerConfig(f.relay.TLS(), f.ca.Pool(), ServerOptions{
		Time:    later,
		Refused: func(e *RefusedError) { got = append(got, e.Reason) },
	})
	// The client keeps the real clock; the relay's own certificate would
	// also be expired at "later", but only the server's view is tested.
	_, serr, _ := handshake(t, srv, f.client(f.edge, "relay.example"))
	if serr == nil || len(got) != 1 || got[0] != ReasonExpired {
		t.Fatalf("server at NotAfter+1m: %v, reasons %v", serr, got)
	}
}

// issueRaw signs a client certificate built by edit, for shapes IssueEdge
// refuses to make.
func issueRaw(t *testing.T, ca *CA, edit func(*x509.Certificate)) *Identity {
	t.Helper()
	tmpl, key, err := ca.leaf("raw", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	edit(tmpl)
	id, err := ca.finish(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestCheckClient checks the edge's own pre-dial check names the same
// reasons the relay counts.
func TestCheckClient(t *testing.T) {
	f := newFixture(t)
	expired, _ := f.ca.IssueEdge("home", Validity{NotBefore: time.Now().Add(-48 * time.Hour), Length: time.Hour})
	stranger, _ := f.other.IssueEdge("home", Validity{})
	for _, tc := range []struct {
		name string
		id   tls.Certificate
		want Reason
	}{
		{"good", f.edge.TLS(), ""},
		{"expired", expired.TLS(), ReasonExpired},
		{"other CA", stranger.TLS(), ReasonUnknownCA},
		{"relay cert", f.relay.TLS(), ReasonUsage},
		{"none", tls.Certificate{}, ReasonNoCert},
		{"garbage", tls.Certificate{Certificate: [][]byte{{1, 2, 3}}}, ReasonBadCert},
	} {
		site, err := CheckClient(tc.id, f.ca.Pool(), time.Now())
		if tc.want == "" {
			if err != nil || site != "home" {
				t.Errorf("%s: %q, %v", tc.name, site, err)
			}
			continue
		}
		if got := Classify(err); err == nil || got != tc.want {
			t.Errorf("%s: %v (%s), want %s", tc.name, err, got, tc.want)
		}
	}
}

// TestResumptionReverified checks a TLS session ticket does not let an
// edge back in once its certificate has expired: VerifyConnection runs
// on resumed connections too.
func TestResumptionReverified(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	var got []Reason
	srv := ServerConfig(f.relay.TLS(), f.ca.Pool(), ServerOptions{
		Time:    func() time.Time { return now },
		Refused: func(e *RefusedError) { got = append(got, e.Reason) },
	})
	cli := f.client(f.edge, "relay.example")
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if _, serr, cerr := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("first handshake: %v %v", serr, cerr)
	}
	cs, serr, cerr := handshake(t, srv, cli)
	if serr != nil || cerr != nil || !cs.DidResume {
		t.Fatalf("second handshake should resume: %v %v resumed=%v", serr, cerr, cs.DidResume)
	}
	if site, err := PeerSite(cs); site != "home" || err != nil {
		t.Errorf("resumed PeerSite = %q, %v", site, err)
	}
	now = f.edge.Cert.NotAfter.Add(time.Second)
	if _, serr, _ := handshake(t, srv, cli); Classify(serr) != ReasonExpired {
		t.Fatalf("resumption after expiry: %v", serr)
	}
	if len(got) != 1 || got[0] != ReasonExpired {
		t.Errorf("refusals %v", got)
	}
}
