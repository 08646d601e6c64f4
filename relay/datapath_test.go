package relay

import (
	"testing"

	"github.com/unmap-dev/unmap/xdp"
)

// TestTableBuckets: the relay's flow table gets a bucket per flow of its
// sites' quotas, a power of two, never under the default nor over the
// bound.
func TestTableBuckets(t *testing.T) {
	for _, tc := range []struct {
		quotas []int
		want   uint32
	}{
		{nil, xdp.DefaultBuckets},
		{[]int{100, 200}, xdp.DefaultBuckets},
		{[]int{65536}, 65536},
		{[]int{65536, 1}, 131072},
		{[]int{40000, 40000}, 131072},
		{[]int{65536, 65536, 65536, 65536, 65536}, maxTableBuckets},
	} {
		var sites []Site
		for _, q := range tc.quotas {
			sites = append(sites, Site{MaxFlows: q})
		}
		if got := tableBuckets(sites); got != tc.want {
			t.Errorf("quotas %v: %d buckets, want %d", tc.quotas, got, tc.want)
		}
	}
}
