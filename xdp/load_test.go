package xdp

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/test/priv"
)

// loadTest loads the objects for a test, failing with the verifier log.
func loadTest(t testing.TB) *datapathObjects {
	t.Helper()
	priv.Require(t)
	var objs datapathObjects
	if err := loadDatapathObjects(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier rejected the datapath: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			priv.Unsupported(t, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// TestVerifierAcceptsPrograms loads every program of the object.
func TestVerifierAcceptsPrograms(t *testing.T) {
	objs := loadTest(t)
	for name, p := range map[string]*ebpf.Program{"edge_lan": objs.EdgeLan, "edge_wan": objs.EdgeWan, "relay_ext": objs.RelayExt, "bench_lookup": objs.BenchLookup, "xdp_pass": objs.XdpPass} {
		if p == nil {
			t.Errorf("program %s not loaded", name)
		}
	}
}

// An ARP frame passes and is counted under pass-not-ip.
func TestReasonCounterNotIP(t *testing.T) {
	objs := loadTest(t)
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	ret, err := objs.EdgeLan.Run(&ebpf.RunOptions{Data: arp})
	if err != nil {
		t.Fatal(err)
	}
	if ret != 2 { // XDP_PASS
		t.Fatalf("verdict %d, want XDP_PASS", ret)
	}
	var per []uint64
	if err := objs.Reasons.Lookup(uint32(xlat.ReasonPassNotIP), &per); err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, n := range per {
		sum += n
	}
	if sum != 1 {
		t.Fatalf("pass-not-ip counted %d times, want 1", sum)
	}
}
