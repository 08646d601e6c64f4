package ports

import (
	"slices"
	"testing"
)

func TestParseReserved(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Range
		bad  bool
	}{
		{"", nil, false},
		{"\n", nil, false},
		{"8080", []Range{{8080, 8080}}, false},
		{"61000-64999,8080\n", []Range{{8080, 8080}, {61000, 64999}}, false},
		{"10-20,15-30,31", []Range{{10, 31}}, false},
		{"0", nil, false},
		{"0-5", []Range{{1, 5}}, false},
		{"5-4", nil, true},
		{"65536", nil, true},
		{"a", nil, true},
		{"1,,2", nil, true},
		{"-", nil, true},
	} {
		got, err := ParseReserved(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("ParseReserved(%q) = %v, %v; want %v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
	got, err := WithReserved("8080,61000-62000", Range{61500, 64999})
	if err != nil || got != "8080,61000-64999" {
		t.Errorf("WithReserved = %q, %v", got, err)
	}
	if !Covered([]Range{{1, 10}, {11, 20}}, Range{5, 15}) || Covered([]Range{{1, 10}}, Range{5, 15}) {
		t.Error("Covered is wrong")
	}
}

// FuzzParseReserved checks the parser never panics and what it accepts
// survives a format and parse round trip.
func FuzzParseReserved(f *testing.F) {
	for _, s := range []string{"", "8080", "61000-64999,8080", "0-5,65535", "1-2,2-3", "x", "5-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseReserved(s)
		if err != nil {
			return
		}
		again, err := ParseReserved(FormatReserved(rs))
		if err != nil || !slices.Equal(again, rs) {
			t.Fatalf("round trip of %q: %v -> %v, %v", s, rs, again, err)
		}
		for i, r := range rs {
			if r.Check() != nil || i > 0 && int(rs[i-1].Last)+1 >= int(r.First) {
				t.Fatalf("%q gave unmerged or bad ranges %v", s, rs)
			}
		}
	})
}
