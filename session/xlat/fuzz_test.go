package xlat_test

import (
	"bytes"
	"testing"

	"github.com/unmap-dev/unmap/session/xlat"
	"github.com/unmap-dev/unmap/session/xlat/xlattest"
)

// FuzzProcess: any bytes through the model never panic, never modify the
// input, keep untouched packets untouched, change the size only as the
// action says, and emit valid checksums for valid translated input.
func FuzzProcess(f *testing.F) {
	for _, fx := range xlattest.Fixtures() {
		f.Add(uint8(fx.Role), fx.In)
	}
	world := xlattest.World()
	f.Fuzz(func(t *testing.T, role uint8, in []byte) {
		r := xlat.Role(role % 3)
		cfg := configFor(r)
		orig := append([]byte(nil), in...)
		res := xlat.Process(r, &cfg, world, nil, in)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		if !res.Hit {
			if !bytes.Equal(res.Out, in) {
				t.Fatal("untouched packet changed")
			}
			return
		}
		e, _ := world.Lookup(res.Key)
		grow := map[xlat.Action]int{xlat.ActXlat64: -20, xlat.ActXlat46: 20, xlat.ActNAPT44: 0, xlat.ActWrap64: -12, xlat.ActUnwrap46: 12}[e.Action]
		if res.ICMPError {
			grow *= 2 // both IP headers change
		}
		if len(res.Out) != len(in)+grow {
			t.Fatalf("%v: %d bytes in, %d out", e.Action, len(in), len(res.Out))
		}
		if e.Action == xlat.ActUnwrap46 && e.Proto == 58 {
			return
		}
		if xlattest.VerifyChecksums(in) == nil {
			if err := xlattest.VerifyChecksums(res.Out); err != nil {
				t.Fatalf("valid input, bad output: %v", err)
			}
		}
	})
}
