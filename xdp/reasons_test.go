package xdp

import (
	"testing"
	"unsafe"

	"github.com/unmap-dev/unmap/session/xlat"
)

// The C enum and the Go mirror must name the same numbers.
func TestReasonsMatchC(t *testing.T) {
	pairs := map[datapathReason]xlat.Reason{
		datapathReasonREASON_NONE:               xlat.ReasonNone,
		datapathReasonREASON_PASS_NOT_IP:        xlat.ReasonPassNotIP,
		datapathReasonREASON_PASS_LOCAL:         xlat.ReasonPassLocal,
		datapathReasonREASON_PASS_NOT_OURS:      xlat.ReasonPassNotOurs,
		datapathReasonREASON_PASS_FRAGMENT:      xlat.ReasonPassFragment,
		datapathReasonREASON_PASS_IP_OPTIONS:    xlat.ReasonPassIPOptions,
		datapathReasonREASON_PASS_IPV6EXT:       xlat.ReasonPassIPv6Ext,
		datapathReasonREASON_PASS_TTL:           xlat.ReasonPassTTL,
		datapathReasonREASON_PASS_ICMP_OTHER:    xlat.ReasonPassICMPOther,
		datapathReasonREASON_PASS_NO_NEIGH:      xlat.ReasonPassNoNeigh,
		datapathReasonREASON_PASS_FIB:           xlat.ReasonPassFIB,
		datapathReasonREASON_DROP_TRUNC_L3:      xlat.ReasonDropTruncL3,
		datapathReasonREASON_DROP_BAD_IP:        xlat.ReasonDropBadIP,
		datapathReasonREASON_DROP_BAD_LEN:       xlat.ReasonDropBadLen,
		datapathReasonREASON_DROP_BAD_CSUM:      xlat.ReasonDropBadCsum,
		datapathReasonREASON_DROP_TRUNC_L4:      xlat.ReasonDropTruncL4,
		datapathReasonREASON_DROP_UDP_ZERO_CSUM: xlat.ReasonDropUDPZeroCsum,
		datapathReasonREASON_DROP_BAD_ENTRY:     xlat.ReasonDropBadEntry,
		datapathReasonREASON_DROP_HELPER:        xlat.ReasonDropHelper,
		datapathReasonREASON_MISS:               xlat.ReasonMiss,
		datapathReasonREASON_DROP_MISS_FULL:     xlat.ReasonDropMissFull,
		datapathReasonREASON_KEEPALIVE:          xlat.ReasonKeepalive,
		datapathReasonREASON_ICMP_ERR_TO_AGENT:  xlat.ReasonICMPErrToAgent,
		datapathReasonREASON_TTL_TO_AGENT:       xlat.ReasonTTLToAgent,
		datapathReasonREASON_DROP_MISS_RATE:     xlat.ReasonDropMissRate,
		datapathReasonREASON_MAX:                xlat.NumReasons,
	}
	for c, g := range pairs {
		if uint32(c) != uint32(g) {
			t.Errorf("C reason %d is Go %d (%v)", c, g, g)
		}
	}
	if len(pairs) != int(xlat.NumReasons)+1 {
		t.Errorf("mirror lists %d reasons, Go has %d", len(pairs)-1, xlat.NumReasons)
	}
	for r := xlat.Reason(0); r < xlat.NumReasons; r++ {
		if r.String() == "" {
			t.Errorf("reason %d has no name", r)
		}
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
		datapathRoleROLE_RELAY_EXT: xlat.RoleRelayExt,
	} {
		if uint32(c) != uint32(g) {
			t.Errorf("C role %d is Go %d (%v)", c, g, g)
		}
	}
	if unsafe.Sizeof(datapathMissRec{}) != missHdrLen+xlat.MissSnap {
		t.Errorf("miss_rec is %d bytes, Go expects %d", unsafe.Sizeof(datapathMissRec{}), missHdrLen+xlat.MissSnap)
	}
}
