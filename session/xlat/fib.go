package xlat

// FIBCode is the outcome of a FIB lookup (bpf_fib_lookup's return codes).
type FIBCode uint8

const (
	FIBSuccess FIBCode = 0 // BPF_FIB_LKUP_RET_SUCCESS
	FIBNoNeigh FIBCode = 7 // BPF_FIB_LKUP_RET_NO_NEIGH
)

// FIBResult is what the kernel's FIB says about a translated packet.
type FIBResult struct {
	Code    FIBCode
	Ifindex uint32 // egress interface on success
	SMAC    [6]byte
	DMAC    [6]byte
	TXPort  bool // the egress interface is in the redirect devmap
	SameIf  bool // egress equals ingress: XDP_TX
}

// FIB answers forwarding lookups for the model, standing in for the
// kernel's table in tests.
type FIB interface {
	Lookup(out []byte) FIBResult
}

// forward decides what happens to a translated packet.
func forward(fib FIB, out []byte) Result {
	if fib == nil {
		return Result{Verdict: Pass, Out: out}
	}
	f := fib.Lookup(out)
	switch f.Code {
	case FIBSuccess:
	case FIBNoNeigh:
		return Result{Verdict: Pass, Reason: ReasonPassNoNeigh, Out: out}
	default:
		return Result{Verdict: Pass, Reason: ReasonPassFIB, Out: out}
	}
	copy(out[0:6], f.DMAC[:])
	copy(out[6:12], f.SMAC[:])
	switch {
	case f.SameIf:
		return Result{Verdict: TX, Out: out}
	case f.TXPort:
		return Result{Verdict: Redirect, Out: out}
	}
	return Result{Verdict: Pass, Reason: ReasonPassFIB, Out: out}
}
