package config

import "testing"

func TestCheckUser(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"", true},       // stay root
		{"nobody", true}, // every system has it
		{"65534", true},
		{"root", false}, // the field is for leaving root
		{"0", false},
		{"-1", false},
		{"no-such-user-unmap", false},
	} {
		if err := CheckUser("user", c.name); (err == nil) != c.ok {
			t.Errorf("CheckUser(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
