package edge

import (
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/slowpath"
)

// The edge's counters, each declared once: its Prometheus name, help and
// label (OPERATING.md lists them; a test checks it does), and the handle
// call sites count through. `unmap status` (section slowpath) shows each
// under its readable name, today's event name (the label value, with its
// family's prefix where the label drops it).
var (
	edgeMetrics   = metrics.NewSet("unmap_edge_unknown_counter_total")
	fFlowsClosed  = edgeMetrics.Family("unmap_edge_flows_closed_total", "Flows the edge ended on what its datapath saw, by reason.", "reason")
	fPick         = edgeMetrics.Family("unmap_edge_pick_total", "Flows whose relay port the edge picked itself (edge-chooses-r), by result.", "result")
	fBind         = edgeMetrics.Family("unmap_edge_bind_total", "Carrier proofs sent and carriers re-bound after the CGNAT moved them, by event.", "event")
	fKeepalive    = edgeMetrics.Family("unmap_edge_keepalive_total", "Keepalives sent on idle UDP carriers, by result.", "result")
	fInbound      = edgeMetrics.Family("unmap_edge_inbound_total", "Inbound flow offers from the relay: refused, accepted, and the LAN host's answer, by event.", "event")
	fTCPHandshake = edgeMetrics.Family("unmap_edge_tcp_handshake_total", "Carrier handshakes of inbound TCP flows (edge side), by event.", "event")
	fRestore      = edgeMetrics.Family("unmap_edge_restore_total", "Flows restored from pinned entries and notes after a restart, and entries not restored, by event.", "event")
	fICMPErrors   = edgeMetrics.Family("unmap_edge_icmp_errors_total", "ICMPv6 errors from the relay given to a LAN host or not, by result.", "result")
	fTTLExceeded  = edgeMetrics.Family("unmap_edge_ttl_exceeded_total", "Time exceeded the edge answered as a router for IPv6 from the LAN, by result.", "result")
	fSlowpath     = edgeMetrics.Family("unmap_edge_slowpath_total", "Packets the datapath handed to the agent that opened no flow, or whose held packets were not sent, by event.", "event")

	mTCPClosed                 = fFlowsClosed.Value("tcp-closed")
	mPickNoPort                = fPick.Value("pick-no-port")
	mPickTaken                 = fPick.Value("pick-taken")
	mPickUnconfirmed           = fPick.Value("pick-unconfirmed")
	mPicked                    = fPick.Value("picked")
	mMovedSuppressed           = fBind.Value("moved-suppressed")
	mMovedUnknownCarrier       = fBind.Value("moved-unknown-carrier")
	mProofSendFailed           = fBind.Value("proof-send-failed")
	mProofSent                 = fBind.Value("proof-sent")
	mRebindProofFailed         = fBind.Value("rebind-proof-failed")
	mRebindProofSent           = fBind.Value("rebind-proof-sent")
	mRebound                   = fBind.Value("rebound")
	mKeepaliveFailed           = fKeepalive.ValueNamed("failed", "keepalive-failed")
	mKeepaliveSent             = fKeepalive.ValueNamed("sent", "keepalive-sent")
	_                          = fInbound.ValueNamed("flow-exists", "inbound-flow-exists")
	mInboundPortShare          = fInbound.ValueNamed("port-share", "inbound-port-share")
	_                          = fInbound.ValueNamed("remote-quota", "inbound-remote-quota")
	_                          = fInbound.ValueNamed("site-quota", "inbound-site-quota")
	mInboundTCPBadSyn          = fInbound.ValueNamed("tcp-bad-syn", "inbound-tcp-bad-syn")
	mInboundTCPEstablished     = fInbound.ValueNamed("tcp-established", "inbound-tcp-established")
	mInboundTCPHostReset       = fInbound.ValueNamed("tcp-host-reset", "inbound-tcp-host-reset")
	mInboundTCPHostSilent      = fInbound.ValueNamed("tcp-host-silent", "inbound-tcp-host-silent")
	mInboundTCPNotTaken        = fInbound.ValueNamed("tcp-not-taken", "inbound-tcp-not-taken")
	mInboundTCPPendingFull     = fInbound.ValueNamed("tcp-pending-full", "inbound-tcp-pending-full")
	mInboundUnanswered         = fInbound.ValueNamed("unanswered", "inbound-unanswered")
	mInboundUnsupported        = fInbound.ValueNamed("unsupported", "inbound-unsupported")
	mHandshakeAckSentAgain     = fTCPHandshake.ValueNamed("ack-sent-again", "handshake-ack-sent-again")
	mHandshakeBuildFailed      = fTCPHandshake.ValueNamed("build-failed", "handshake-build-failed")
	mHandshakeCarrierSynSent   = fTCPHandshake.ValueNamed("carrier-syn-sent", "handshake-carrier-syn-sent")
	mHandshakeCompleted        = fTCPHandshake.ValueNamed("completed", "handshake-completed")
	mHandshakeHostSynackAgain  = fTCPHandshake.ValueNamed("host-synack-again", "handshake-host-synack-again")
	mHandshakeHostSynackLate   = fTCPHandshake.ValueNamed("host-synack-late", "handshake-host-synack-late")
	mHandshakeHostUnexpected   = fTCPHandshake.ValueNamed("host-unexpected", "handshake-host-unexpected")
	mHandshakeMapFailed        = fTCPHandshake.ValueNamed("map-failed", "handshake-map-failed")
	mHandshakeRelaySynackAgain = fTCPHandshake.ValueNamed("relay-synack-again", "handshake-relay-synack-again")
	mHandshakeRelayUnexpected  = fTCPHandshake.ValueNamed("relay-unexpected", "handshake-relay-unexpected")
	mHandshakeSendFailed       = fTCPHandshake.ValueNamed("send-failed", "handshake-send-failed")
	mHandshakeUnreadable       = fTCPHandshake.ValueNamed("unreadable", "handshake-unreadable")
	mNotesFailed               = fRestore.Value("notes-failed")
	mRestoreHalfPair           = fRestore.Value("restore-half-pair")
	mRestoreNoNotes            = fRestore.Value("restore-no-notes")
	mRestorePortTaken          = fRestore.Value("restore-port-taken")
	mRestoreRefused            = fRestore.Value("restore-refused")
	mRestoreStaleEntry         = fRestore.Value("restore-stale-entry")
	mRestored                  = fRestore.Value("restored")
	mICMPErrHopLimit           = fICMPErrors.ValueNamed("hop-limit", "icmp-err-hop-limit")
	mICMPErrInjectFailed       = fICMPErrors.ValueNamed("inject-failed", "icmp-err-inject-failed")
	mICMPErrInjected           = fICMPErrors.ValueNamed("injected", "icmp-err-injected")
	mICMPErrNoDatapath         = fICMPErrors.ValueNamed("no-datapath", "icmp-err-no-datapath")
	mICMPErrNotFlow            = fICMPErrors.ValueNamed("not-flow", "icmp-err-not-flow")
	mICMPErrNotPrefix          = fICMPErrors.ValueNamed("not-prefix", "icmp-err-not-prefix")
	mICMPErrUnusable           = fICMPErrors.ValueNamed("unusable", "icmp-err-unusable")
	mTTLExceededMalformed      = fTTLExceeded.ValueNamed("malformed", "ttl-exceeded-malformed")
	mTTLExceededNoPrefix       = fTTLExceeded.ValueNamed("no-prefix", "ttl-exceeded-no-prefix")
	mTTLExceededRateLimited    = fTTLExceeded.ValueNamed("rate-limited", "ttl-exceeded-rate-limited")
	mTTLExceededSendFailed     = fTTLExceeded.ValueNamed("send-failed", "ttl-exceeded-send-failed")
	mTTLExceededSent           = fTTLExceeded.ValueNamed("sent", "ttl-exceeded-sent")
	mHeldDropped               = fSlowpath.Value("held-dropped")
	mHeldInjectFailed          = fSlowpath.Value("held-inject-failed")
	_                          = fSlowpath.Value("held-overflow")
	mHeldUntranslated          = fSlowpath.Value("held-untranslated")
	mMissNoPublicIPv4          = fSlowpath.Value("miss-no-public-ipv4")
	mMissNotSite               = fSlowpath.Value("miss-not-site")
	mMissTCPAnswerNoFlow       = fSlowpath.Value("miss-tcp-answer-no-flow")
	mMissUnusable              = fSlowpath.Value("miss-unusable")
	mMissWan                   = fSlowpath.Value("miss-wan")
	_                          = fSlowpath.Value("opening-full")
)

// The counters the shared slow path counts under (slowpath.SendHeld,
// slowpath.SendTimeExceeded).
var (
	heldCounters         = slowpath.HeldCounters{Untranslated: mHeldUntranslated, InjectFailed: mHeldInjectFailed}
	timeExceededCounters = slowpath.TimeExceededCounters{RateLimited: mTTLExceededRateLimited, Malformed: mTTLExceededMalformed, SendFailed: mTTLExceededSendFailed, Sent: mTTLExceededSent}
)

// Counted by name (metrics.Counters.IncName), as blank declarations
// above: the reasons the openings and the inbound quota return.
