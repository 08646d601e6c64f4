package pki

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestCheckSiteID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"home", true},
		{"a", true},
		{"0", true},
		{"site-42", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-home", false},
		{"home-", false},
		{"Home", false},
		{"ho_me", false},
		{"ho.me", false},
		{"hôme", false},
		{"ho me", false},
		{"home/x", false},
	} {
		err := CheckSiteID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSiteID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadSiteID) {
			t.Errorf("CheckSiteID(%q) error %v is not ErrBadSiteID", tc.id, err)
		}
	}
}

func certWithURIs(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	c := &x509.Certificate{}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestSiteID(t *testing.T) {
	for _, tc := range []struct {
		uris []string
		want string
		err  error
	}{
		{[]string{"unmap://site/home"}, "home", nil},
		{[]string{"https://example.com/x", "unmap://site/shop-2"}, "shop-2", nil},
		{[]string{"UNMAP://SITE/home"}, "home", nil},
		{nil, "", ErrNoSiteID},
		{[]string{"unmap://other/home"}, "", ErrNoSiteID},
		{[]string{"unmap://site/home", "unmap://site/shop"}, "", ErrTwoSites},
		{[]string{"unmap://site/Home"}, "", ErrBadSiteID},
		{[]string{"unmap://site/"}, "", ErrBadSiteID},
		{[]string{"unmap://site/home/x"}, "", ErrBadSiteID},
		{[]string{"unmap://site/home?x=1"}, "", ErrBadSiteID},
		{[]string{"unmap://site/home#x"}, "", ErrBadSiteID},
		{[]string{"unmap://u@site/home"}, "", ErrBadSiteID},
		{[]string{"unmap://site/ho%6De"}, "", ErrBadSiteID},
	} {
		got, err := SiteID(certWithURIs(t, tc.uris...))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("SiteID(%v) = %q, %v; want %q, %v", tc.uris, got, err, tc.want, tc.err)
		}
	}
	if _, err := SiteID(nil); !errors.Is(err, ErrNoSiteID) {
		t.Errorf("SiteID(nil) = %v", err)
	}
}

// TestIssueEdgeSiteID checks the id survives signing and parsing.
func TestIssueEdgeSiteID(t *testing.T) {
	ca, err := NewCA("", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.IssueEdge("branch-7", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := SiteID(id.Cert); got != "branch-7" || err != nil {
		t.Errorf("SiteID = %q, %v", got, err)
	}
	if _, err := ca.IssueEdge("Bad_Site", Validity{}); !errors.Is(err, ErrBadSiteID) {
		t.Errorf("IssueEdge(Bad_Site) = %v, want ErrBadSiteID", err)
	}
}

// FuzzSiteID feeds arbitrary URI SANs: SiteID never panics, and an id it
// accepts is valid and makes the same URI again.
func FuzzSiteID(f *testing.F) {
	for _, s := range []string{"unmap://site/home", "unmap://site/", "unmap://site/a/b", "UNMAP://Site/x-1", "unmap://site/%2e", "unmap:opaque", "unmap://site/home?q#f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		id, err := SiteID(&x509.Certificate{URIs: []*url.URL{u}})
		if err != nil {
			return
		}
		if CheckSiteID(id) != nil {
			t.Fatalf("SiteID(%q) accepted invalid id %q", s, id)
		}
		again, err := SiteID(&x509.Certificate{URIs: []*url.URL{SiteURI(id)}})
		if err != nil || again != id {
			t.Fatalf("SiteURI(%q) gives %q, %v", id, again, err)
		}
	})
}
