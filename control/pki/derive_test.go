package pki

import "testing"

// TestDeriveSecret: the same key and purpose give the same secret (what
// a restart needs); another purpose or another key gives another one.
func TestDeriveSecret(t *testing.T) {
	ca, err := NewCA("test CA", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA", Validity{})
	if err != nil {
		t.Fatal(err)
	}
	a1, err1 := DeriveSecret(ca.Key, PurposeStatelessReset)
	a2, err2 := DeriveSecret(ca.Key, PurposeStatelessReset)
	b, err3 := DeriveSecret(ca.Key, PurposeSessionTicket)
	c, err4 := DeriveSecret(other.Key, PurposeStatelessReset)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if a1 != a2 {
		t.Error("one key and purpose gave two secrets")
	}
	if a1 == b || a1 == c || a1 == [32]byte{} {
		t.Error("secrets of another purpose or key are the same")
	}
}
