package xdp

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/unmap-dev/unmap/session/xlat"
)

// The C's reason table (UNMAP_REASONS in bpf/reasons.h, read from the
// object's BTF: enum reason and enum reason_action) and the Go mirror
// (xlat.Reason, its names and verdicts) list the same reasons under the
// same numbers, names and actions: a reason added to one side only, or
// with another action, fails here, whatever its place in the list.
func TestReasonsMatchC(t *testing.T) {
	spec, err := loadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	var reasons, actions *btf.Enum
	if err := spec.Types.TypeByName("reason", &reasons); err != nil {
		t.Fatal(err)
	}
	if err := spec.Types.TypeByName("reason_action", &actions); err != nil {
		t.Fatal(err)
	}
	action := map[string]xlat.Verdict{}
	for _, v := range actions.Values {
		action[strings.TrimPrefix(v.Name, "REASON_ACTION_")] = xlat.Verdict(v.Value)
	}
	n := 0
	for _, v := range reasons.Values {
		name := strings.TrimPrefix(v.Name, "REASON_")
		if name == "MAX" {
			if v.Value != uint64(xlat.NumReasons) {
				t.Errorf("C has %d reasons, Go %d", v.Value, xlat.NumReasons)
			}
			continue
		}
		n++
		r := xlat.Reason(v.Value)
		if want := strings.ToLower(strings.ReplaceAll(name, "_", "-")); r.String() != want {
			t.Errorf("C reason %d is %s, Go names it %q", v.Value, v.Name, r)
		}
		a, ok := action[name]
		if !ok {
			t.Errorf("C reason %s has no action", v.Name)
		}
		if r.Verdict() != a {
			t.Errorf("C reason %s: action %v, Go %v", v.Name, a, r.Verdict())
		}
	}
	if n != int(xlat.NumReasons) {
		t.Errorf("C lists %d reasons, Go %d", n, xlat.NumReasons)
	}
}

// Actions and roles are shared words too.
func TestActionsAndRolesMatchC(t *testing.T) {
	for c, g := range map[datapathAction]xlat.Action{
		datapathActionACT_NONE: xlat.ActNone, datapathActionACT_XLAT64: xlat.ActXlat64,
		datapathActionACT_XLAT46: xlat.ActXlat46, datapathActionACT_NAPT44: xlat.ActNAPT44,
		datapathActionACT_WRAP64: xlat.ActWrap64, datapathActionACT_UNWRAP46: xlat.ActUnwrap46,
	} {
		if uint32(c) != uint32(g) {
			t.Errorf("C action %d is Go %d (%v)", c, g, g)
		}
	}
	for c, g := range map[datapathRole]xlat.Role{
		datapathRoleROLE_EDGE_LAN: xlat.RoleEdgeLAN, datapathRoleROLE_EDGE_WAN: xlat.RoleEdgeWAN,
		datapathRoleROLE_RELAY_EXT: xlat.RoleRelayExt, datapathRoleROLE_RELAY_SUB: xlat.RoleRelaySub,
	} {
		if uint32(c) != uint32(g) {
			t.Errorf("C role %d is Go %d (%v)", c, g, g)
		}
	}
	if unsafe.Sizeof(datapathMissRec{}) != missHdrLen+xlat.MissSnap {
		t.Errorf("miss_rec is %d bytes, Go expects %d", unsafe.Sizeof(datapathMissRec{}), missHdrLen+xlat.MissSnap)
	}
}
