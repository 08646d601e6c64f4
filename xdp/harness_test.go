package xdp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
	"github.com/unmap-dev/unmap/test/priv"
)

// harness runs packets through the XDP programs (BPF_PROG_RUN, forwarding
// off) and through the reference model with the same tables, and reports
// any difference in verdict, reason, bytes, miss record or counters.
type harness struct {
	world        *xlattest.Tables
	edge, relay  *Datapath
	edgeM, relM  *MissReader
	cfgE, cfgR   xlat.Config
	checkReasons bool // read reason counters around every packet (slow)
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	priv.Require(tb)
	h := &harness{world: xlattest.World(), cfgE: xlattest.Config(xlattest.EdgeWAN), cfgR: xlattest.Config(xlattest.RelayAddr)}
	h.edge, h.edgeM = loadWorld(tb, h.cfgE, h.world)
	h.relay, h.relM = loadWorld(tb, h.cfgR, h.world)
	return h
}

// loadWorld loads a datapath with w's tables and no bound on misses per
// source: the model it is compared with has no clock, and the tests
// send many misses from the world's few hosts (missrate_test.go tests
// the bound).
func loadWorld(tb testing.TB, cfg xlat.Config, w *xlattest.Tables) (*Datapath, *MissReader) {
	tb.Helper()
	return loadWorldOpts(tb, cfg, Options{NoMissLimit: true}, w)
}

func loadWorldOpts(tb testing.TB, cfg xlat.Config, opts Options, w *xlattest.Tables) (*Datapath, *MissReader) {
	tb.Helper()
	d, err := Load(cfg, opts)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("verifier: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			priv.Unsupported(tb, err)
		}
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	populate(tb, d, w)
	m, err := d.Misses()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return d, m
}

// populate switches forwarding off and installs w's tables into d.
func populate(tb testing.TB, d *Datapath, w *xlattest.Tables) {
	tb.Helper()
	if err := d.SetFIB(false); err != nil {
		tb.Fatal(err)
	}
	for k, e := range w.Flows {
		if err := d.Put(k, e); err != nil {
			tb.Fatalf("put %v: %v", k, err)
		}
	}
	for a := range w.Local {
		if err := d.AddLocal(a); err != nil {
			tb.Fatal(err)
		}
	}
	for _, p := range w.Prefix {
		if err := d.AddSitePrefix(p); err != nil {
			tb.Fatal(err)
		}
	}
}

func (h *harness) forRole(r xlat.Role) (*Datapath, *MissReader, *xlat.Config) {
	if r == xlat.RoleRelayExt {
		return h.relay, h.relM, &h.cfgR
	}
	return h.edge, h.edgeM, &h.cfgE
}

// compare runs one packet through both and returns the model's result.
func (h *harness) compare(role xlat.Role, in []byte) (xlat.Result, error) {
	d, misses, cfg := h.forRole(role)
	want := xlat.Process(role, cfg, h.world, nil, append([]byte(nil), in...))
	var before [xlat.NumReasons]uint64
	var cBefore Counters
	var err error
	if h.checkReasons {
		if before, err = d.Reasons(); err != nil {
			return want, err
		}
		if want.Hit {
			if cBefore, err = d.FlowCounters(want.Key); err != nil {
				return want, err
			}
		}
	}
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := d.Program(role).Run(opts)
	if err != nil {
		return want, fmt.Errorf("BPF_PROG_RUN: %w", err)
	}
	out := opts.DataOut
	if xlat.Verdict(ret) != want.Verdict {
		return want, fmt.Errorf("verdict %v, model %v (%v)", xlat.Verdict(ret), want.Verdict, want.Reason)
	}
	if !bytes.Equal(out, want.Out) {
		return want, fmt.Errorf("bytes differ (model %v)\nxdp   %x\nmodel %x", want.Reason, out, want.Out)
	}
	if want.Reason.ToAgent() {
		misses.SetDeadline(time.Now().Add(time.Second))
		m, err := misses.Read()
		if err != nil {
			return want, fmt.Errorf("miss record: %w", err)
		}
		if !bytes.Equal(m.Data, want.Miss) || m.Len != len(in) || m.Role != role {
			return want, fmt.Errorf("miss record %d/%d bytes role %v, model %d/%d role %v", len(m.Data), m.Len, m.Role, len(want.Miss), len(in), role)
		}
	}
	if h.checkReasons {
		after, err := d.Reasons()
		if err != nil {
			return want, err
		}
		for r := range after {
			n := after[r] - before[r]
			exp := uint64(0)
			if xlat.Reason(r) == want.Reason && want.Reason != xlat.ReasonNone {
				exp = 1
			}
			if xlat.Reason(r) != xlat.ReasonNone && n != exp {
				return want, fmt.Errorf("reason %v counted %d, want %d", xlat.Reason(r), n, exp)
			}
		}
		if want.Hit {
			c, err := d.FlowCounters(want.Key)
			if err != nil {
				return want, err
			}
			if c.Packets-cBefore.Packets != 1 || c.Bytes-cBefore.Bytes != uint64(len(in)) {
				return want, fmt.Errorf("flow counters moved by %d/%d, want 1/%d", c.Packets-cBefore.Packets, c.Bytes-cBefore.Bytes, len(in))
			}
			if c.Ended != cBefore.Ended|want.TCPEnd {
				return want, fmt.Errorf("entry flags %#x after %#x, model adds %#x", c.Ended, cBefore.Ended, want.TCPEnd)
			}
		}
	}
	return want, nil
}

// noStrayMisses fails if either ring holds a record the model did not predict.
func (h *harness) noStrayMisses(tb testing.TB) {
	tb.Helper()
	for _, m := range []*MissReader{h.edgeM, h.relM} {
		m.SetDeadline(time.Now().Add(10 * time.Millisecond))
		if rec, err := m.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			tb.Errorf("unexpected miss record %+v (err %v)", rec, err)
		}
	}
}

// runRole runs in through role's program (BPF_PROG_RUN) and returns the
// verdict and the frame as it left; an error of the run fails the test.
func runRole(tb testing.TB, d *Datapath, role xlat.Role, in []byte) (xlat.Verdict, []byte) {
	tb.Helper()
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	ret, err := d.Program(role).Run(opts)
	if err != nil {
		tb.Fatalf("%v: BPF_PROG_RUN: %v", role, err)
	}
	return xlat.Verdict(ret), opts.DataOut
}
