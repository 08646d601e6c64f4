package main

import (
	"testing"
	"time"
)

// TestVersionFromDescribe checks the package versions made from git
// describe (a tag, a pre-release tag, commits after a tag, no tag, a
// modified checkout) and which hand-given versions are refused.
func TestVersionFromDescribe(t *testing.T) {
	commit := time.Date(2026, 12, 2, 21, 5, 48, 0, time.UTC)
	for _, tc := range []struct{ describe, want string }{
		{"v1.2.3-0-g874476a1b2c3", "1.2.3"},
		{"v1.3.0-rc1-0-g874476a1b2c3", "1.3.0~rc1"},
		{"v1.2.3-4-g874476a1b2c3", "1.2.3+git4.874476a1b2c3"},
		{"v1.2.3-4-g874476a1b2c3-dirty", "1.2.3+git4.874476a1b2c3.dirty"},
		{"v1.2.3-0-g874476a1b2c3-dirty", "1.2.3+dirty"},
		{"874476a1b2c3", "0~git20261202210548.874476a1b2c3"},
		{"874476a1b2c3-dirty", "0~git20261202210548.874476a1b2c3.dirty"},
	} {
		got, err := versionFromDescribe(tc.describe, commit)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "release-5", "v1.2.3-4-gXYZ"} {
		if v, err := versionFromDescribe(bad, commit); err == nil {
			t.Errorf("%q: made %q, want an error", bad, v)
		}
	}
	for in, want := range map[string]string{"v1.2.3": "1.2.3", "1.3.0~rc1": "1.3.0~rc1"} {
		if got, err := cleanVersion(in); err != nil || got != want {
			t.Errorf("cleanVersion(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "latest", "1.2 3", "1:2.3", "1.2-3"} {
		if _, err := cleanVersion(bad); err == nil {
			t.Errorf("cleanVersion(%q) accepted", bad)
		}
	}
}
