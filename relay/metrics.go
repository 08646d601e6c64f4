package relay

import (
	"strings"

	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
	"github.com/unmap-dev/unmap/slowpath"
)

// The relay's counters, each declared once: its Prometheus name, help and
// label (OPERATING.md lists them; a test checks it does), and the handle
// call sites count through. `unmap status` (section slowpath) shows each
// under its readable name, today's event name (the label value, with its
// family's prefix where the label drops it).
var (
	relayMetrics   = metrics.NewSet("unmap_relay_unknown_counter_total")
	fFlowsClosed   = relayMetrics.Family("unmap_relay_flows_closed_total", "Flows the relay ended on its own, by reason.", "reason")
	fReplayed      = relayMetrics.Family("unmap_relay_replayed_total", "Flows of an edge's replay the relay kept, by how (its own, claimed after a restart, pinned).", "event")
	fReplayRefused = relayMetrics.Family("unmap_relay_replay_refused_total", "Flows of an edge's replay the relay refused, by reason.", "reason")
	fBind          = relayMetrics.Family("unmap_relay_bind_total", "Carrier binding: bound, re-bound, refused binds and packets held before a proof, by event.", "event")
	fEarly         = relayMetrics.Family("unmap_relay_early_total", "Packets to carrier ports whose FlowOpen had not arrived: held, overflowed, expired.", "event")
	fInbound       = relayMetrics.Family("unmap_relay_inbound_total", "Inbound flows (remotes to a site): offers refused or not made, held packets, TCP handshakes with the remote, by event.", "event")
	fTCPHandshake  = relayMetrics.Family("unmap_relay_tcp_handshake_total", "Carrier handshakes of inbound TCP flows (relay side), by event.", "event")
	fPinned        = relayMetrics.Family("unmap_relay_pinned_total", "Flows taken over from pinned entries after a restart, and how they ended, by event.", "event")
	fICMPErrors    = relayMetrics.Family("unmap_relay_icmp_errors_total", "ICMPv6 errors from routers beyond the relay, relayed to an edge or not, by result.", "result")
	fTTLExceeded   = relayMetrics.Family("unmap_relay_ttl_exceeded_total", "Time exceeded the relay answered as a router for carriers whose TTL ran out, by result.", "result")
	fSlowpath      = relayMetrics.Family("unmap_relay_slowpath_total", "Packets the datapath handed to the agent that opened nothing (unusable, not re-sent), and flows the datapath refused, by event.", "event")

	mOpened                     = relayMetrics.Counter("unmap_relay_flows_opened_total", "opened", "Flows opened for the sites (FlowOpens granted).")
	mExpired                    = fFlowsClosed.Value("expired")
	mInboundUnanswered          = fFlowsClosed.Value("inbound-unanswered")
	mTCPClosed                  = fFlowsClosed.Value("tcp-closed")
	mReplayed                   = fReplayed.Value("replayed")
	mReplayedClaimed            = fReplayed.Value("replayed-claimed")
	mReplayedPinned             = fReplayed.Value("replayed-pinned")
	mReplayRefusedPublicAddress = fReplayRefused.ValueNamed("public-address", "replay-refused-public-address")
	mReplayRefusedPublicPort    = fReplayRefused.ValueNamed("public-port", "replay-refused-public-port")
	mBindAlreadyBound           = fBind.Value("bind-already-bound")
	mBindBadToken               = fBind.Value("bind-bad-token")
	mBindHeld                   = fBind.Value("bind-held")
	mBindHeldOtherPort          = fBind.Value("bind-held-other-port")
	mBindLimited                = fBind.Value("bind-limited")
	mBindNoCarrier              = fBind.Value("bind-no-carrier")
	mBindNoProof                = fBind.Value("bind-no-proof")
	mBindUnsupported            = fBind.Value("bind-unsupported")
	mBound                      = fBind.Value("bound")
	mMovedAsked                 = fBind.Value("moved-asked")
	mMovedNotAsked              = fBind.Value("moved-not-asked")
	mRebindBadToken             = fBind.Value("rebind-bad-token")
	mRebound                    = fBind.Value("rebound")
	mEarlyExpired               = fEarly.ValueNamed("expired", "early-expired")
	mEarlyHeld                  = fEarly.ValueNamed("held", "early-held")
	mEarlyOverflow              = fEarly.ValueNamed("overflow", "early-overflow")
	mInboundHeldFull            = fInbound.ValueNamed("held-full", "inbound-held-full")
	mInboundHeldOverflow        = fInbound.ValueNamed("held-overflow", "inbound-held-overflow")
	mInboundNoPort              = fInbound.ValueNamed("no-port", "inbound-no-port")
	mInboundNoSession           = fInbound.ValueNamed("no-session", "inbound-no-session")
	mInboundNotOpened           = fInbound.ValueNamed("not-opened", "inbound-not-opened")
	mInboundOfferRate           = fInbound.ValueNamed("offer-rate", "inbound-offer-rate")
	mInboundOverBudget          = fInbound.ValueNamed("over-budget", "inbound-over-budget")
	mInboundOverSiteShare       = fInbound.ValueNamed("over-site-share", "inbound-over-site-share")
	mInboundPendingFull         = fInbound.ValueNamed("pending-full", "inbound-pending-full")
	mInboundPortReused          = fInbound.ValueNamed("port-reused", "inbound-port-reused")
	mInboundPortShare           = fInbound.ValueNamed("port-share", "inbound-port-share")
	mInboundRefused             = fInbound.ValueNamed("refused", "inbound-refused")
	mInboundRefusedCacheFull    = fInbound.ValueNamed("refused-cache-full", "inbound-refused-cache-full")
	mInboundRefusedCached       = fInbound.ValueNamed("refused-cached", "inbound-refused-cached")
	_                           = fInbound.ValueNamed("remote-quota", "inbound-remote-quota")
	_                           = fInbound.ValueNamed("site-quota", "inbound-site-quota")
	mInboundTCPAckUnproven      = fInbound.ValueNamed("tcp-ack-unproven", "inbound-tcp-ack-unproven")
	mInboundTCPAcked            = fInbound.ValueNamed("tcp-acked", "inbound-tcp-acked")
	mInboundTCPNoPort           = fInbound.ValueNamed("tcp-no-port", "inbound-tcp-no-port")
	mInboundTCPNotOpened        = fInbound.ValueNamed("tcp-not-opened", "inbound-tcp-not-opened")
	mInboundTCPNotSyn           = fInbound.ValueNamed("tcp-not-syn", "inbound-tcp-not-syn")
	mInboundTCPPortShare        = fInbound.ValueNamed("tcp-port-share", "inbound-tcp-port-share")
	mInboundTCPRefused          = fInbound.ValueNamed("tcp-refused", "inbound-tcp-refused")
	mInboundTCPResetSent        = fInbound.ValueNamed("tcp-reset-sent", "inbound-tcp-reset-sent")
	mInboundTCPSynAgain         = fInbound.ValueNamed("tcp-syn-again", "inbound-tcp-syn-again")
	mInboundTCPSynAnswered      = fInbound.ValueNamed("tcp-syn-answered", "inbound-tcp-syn-answered")
	mInboundTCPUnreadable       = fInbound.ValueNamed("tcp-unreadable", "inbound-tcp-unreadable")
	mInboundTruncated           = fInbound.ValueNamed("truncated", "inbound-truncated")
	mInboundUnreadable          = fInbound.ValueNamed("unreadable", "inbound-unreadable")
	mHandshakeBuildFailed       = fTCPHandshake.ValueNamed("build-failed", "handshake-build-failed")
	mHandshakeCarrierSynAgain   = fTCPHandshake.ValueNamed("carrier-syn-again", "handshake-carrier-syn-again")
	mHandshakeCarrierSynEarly   = fTCPHandshake.ValueNamed("carrier-syn-early", "handshake-carrier-syn-early")
	mHandshakeCompleted         = fTCPHandshake.ValueNamed("completed", "handshake-completed")
	mHandshakeSendFailed        = fTCPHandshake.ValueNamed("send-failed", "handshake-send-failed")
	mHandshakeStale             = fTCPHandshake.ValueNamed("stale", "handshake-stale")
	mHandshakeSynackSent        = fTCPHandshake.ValueNamed("synack-sent", "handshake-synack-sent")
	mHandshakeUnexpected        = fTCPHandshake.ValueNamed("unexpected", "handshake-unexpected")
	mHandshakeUnreadable        = fTCPHandshake.ValueNamed("unreadable", "handshake-unreadable")
	mPinned                     = fPinned.Value("pinned")
	mPinnedNotReplayed          = fPinned.Value("pinned-not-replayed")
	mPinnedReplaced             = fPinned.Value("pinned-replaced")
	mPinnedStale                = fPinned.Value("pinned-stale")
	mPinnedUnowned              = fPinned.Value("pinned-unowned")
	mPinnedUnusable             = fPinned.Value("pinned-unusable")
	mICMPErrHopLimit            = fICMPErrors.ValueNamed("hop-limit", "icmp-err-hop-limit")
	mICMPErrMalformed           = fICMPErrors.ValueNamed("malformed", "icmp-err-malformed")
	mICMPErrNoSession           = fICMPErrors.ValueNamed("no-session", "icmp-err-no-session")
	mICMPErrNotFlow             = fICMPErrors.ValueNamed("not-flow", "icmp-err-not-flow")
	mICMPErrRateLimited         = fICMPErrors.ValueNamed("rate-limited", "icmp-err-rate-limited")
	mICMPErrRelayed             = fICMPErrors.ValueNamed("relayed", "icmp-err-relayed")
	mICMPErrSendFailed          = fICMPErrors.ValueNamed("send-failed", "icmp-err-send-failed")
	mICMPErrTooLong             = fICMPErrors.ValueNamed("too-long", "icmp-err-too-long")
	mICMPErrTruncated           = fICMPErrors.ValueNamed("truncated", "icmp-err-truncated")
	mTTLExceededMalformed       = fTTLExceeded.ValueNamed("malformed", "ttl-exceeded-malformed")
	mTTLExceededRateLimited     = fTTLExceeded.ValueNamed("rate-limited", "ttl-exceeded-rate-limited")
	mTTLExceededSendFailed      = fTTLExceeded.ValueNamed("send-failed", "ttl-exceeded-send-failed")
	mTTLExceededSent            = fTTLExceeded.ValueNamed("sent", "ttl-exceeded-sent")
	mHeldInjectFailed           = fSlowpath.Value("held-inject-failed")
	mHeldUntranslated           = fSlowpath.Value("held-untranslated")
	mMapFailed                  = fSlowpath.Value("map-failed")
	mMissExemptFailed           = fSlowpath.Value("miss-exempt-failed")
	mMissUnusable               = fSlowpath.Value("miss-unusable")
)

// The counters the shared slow path counts under (slowpath.SendHeld,
// slowpath.SendTimeExceeded).
var (
	heldCounters         = slowpath.HeldCounters{Untranslated: mHeldUntranslated, InjectFailed: mHeldInjectFailed}
	timeExceededCounters = slowpath.TimeExceededCounters{RateLimited: mTTLExceededRateLimited, Malformed: mTTLExceededMalformed, SendFailed: mTTLExceededSendFailed, Sent: mTTLExceededSent}
)

// Counted by name (metrics.Counters.IncName), as blank declarations
// above: the inbound quota's refusals (its admit names them).

// replayRefusedByCode is the counter of a replayed entry refused by a
// grant, by the grant's code: every code SPEC defines.
var replayRefusedByCode = func() func(proto.Code) metrics.Counter {
	var by []metrics.Counter
	for code := proto.Code(0); !strings.HasPrefix(code.String(), "code-"); code++ {
		if code == proto.CodeOK {
			by = append(by, metrics.Counter{})
			continue
		}
		by = append(by, fReplayRefused.ValueNamed(code.String(), "replay-refused-"+code.String()))
	}
	other := fReplayRefused.ValueNamed("other", "replay-refused-other")
	return func(c proto.Code) metrics.Counter {
		if int(c) < len(by) && c != proto.CodeOK {
			return by[c]
		}
		return other
	}
}()
