package metrics

import (
	"os"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
)

// TestDatapathDocumented: the datapath's metrics (the reasons collector
// and the flow table's gauges) are in OPERATING.md's metrics table, and
// every unmap_datapath_ metric it lists is registered by them.
func TestDatapathDocumented(t *testing.T) {
	md, err := os.ReadFile("../OPERATING.md")
	if err != nil {
		t.Fatal(err)
	}
	names := Names(NewReasons("edge", func(*[xlat.NumReasons]uint64) error { return nil }),
		NewTable("edge", func() (int, int, int) { return 0, 0, 0 }))
	for _, bad := range CheckDocs(DocTable(string(md)), []string{"unmap_datapath_"}, names, nil) {
		t.Error(bad)
	}
}
