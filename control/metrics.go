package control

import (
	"strings"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/metrics"
	"github.com/unmap-dev/unmap/proto"
)

// The control channel's counters (both ends), each declared once: its
// Prometheus name, help and label (OPERATING.md lists them; a test checks
// it does). `unmap status` (section control) shows them by their readable
// names, which are those of the counters before the registry:
// session_refused_<code>, tls_refused_<pki reason>, ...
var (
	controlMetrics = metrics.NewSet("unmap_control_unknown_counter_total")

	fSessions   = controlMetrics.Family("unmap_control_sessions_total", "Control sessions started, resumed, replaced (relay), ended (relay), and reconnects and failed dials (edge), by event.", "event")
	fFlows      = controlMetrics.Family("unmap_control_flows_total", "Flows opened (FlowGrant OK) and closed (FlowClose) on the control channel, by event.", "event")
	fOffers     = controlMetrics.Family("unmap_control_offers_total", "Inbound flow offers sent (relay) and accepted, by event.", "event")
	fMessages   = controlMetrics.Family("unmap_control_messages_total", "Other control messages and events: replay entries, late replies, skipped advisories, ICMP errors sent and received, by event.", "event")
	fSend       = controlMetrics.Family("unmap_control_send_closed_total", "Sessions the relay closed because the edge did not read what it was sent, by reason.", "reason")
	fHandshakes = controlMetrics.Family("unmap_control_handshakes_total", "QUIC handshakes: retries sent and handshakes refused (relay: over its bound; edge: the relay refused its certificate), by event.", "event")

	mReconnects          = fSessions.Value("reconnects")
	mDialFailed          = fSessions.Value("dial_failed")
	mSessionsStarted     = fSessions.Value("sessions_started")
	mSessionsResumed     = fSessions.Value("sessions_resumed")
	mSessionsReplaced    = fSessions.Value("sessions_replaced")
	mSessionsEnded       = fSessions.Value("sessions_ended")
	mConnLostBeforeHello = fSessions.Value("conn_lost_before_hello")
	mMigrations          = fSessions.Value("migrations")

	mFlowsOpened = fFlows.Value("flows_opened")
	mFlowsClosed = fFlows.Value("flows_closed")

	mOffersSent     = fOffers.Value("offers_sent")
	mOffersAccepted = fOffers.Value("offers_accepted")

	mReplayEntries       = fMessages.Value("replay_entries")
	mReplaysDone         = fMessages.Value("replays_done")
	mReplayThrottled     = fMessages.Value("replay_throttled")
	mLateReplies         = fMessages.Value("late_replies")
	mAdvisorySkipped     = fMessages.Value("advisory_skipped")
	mICMPErrorsSent      = fMessages.Value("icmp_errors_sent")
	mICMPErrorsReceived  = fMessages.Value("icmp_errors_received")
	mICMPErrorsUnhandled = fMessages.Value("icmp_errors_unhandled")

	mSendQueueFull = fSend.Value("send_queue_full")
	mSendStalled   = fSend.Value("send_stalled")
	mSendFailed    = fSend.Value("send_failed")

	mHandshakesRetrySent = fHandshakes.Value("handshakes_retry_sent")
	mHandshakesRefused   = fHandshakes.Value("handshakes_refused")

	// Counted by a protocol code (proto.Code), each the closed set of
	// codes SPEC defines.
	fFlowRefused    = codeFamily("unmap_control_flow_refused_total", "FlowOpens and replay entries refused, by code.", "flow_refused_")
	fOfferRefused   = codeFamily("unmap_control_offer_refused_total", "Inbound offers the edge refused (or left unanswered: timeout), by code.", "offer_refused_")
	fSessionRefused = codeFamily("unmap_control_session_refused_total", "Hellos refused, by code.", "session_refused_")
	fConnClosed     = codeFamily("unmap_control_conn_closed_total", "Connections closed for an error, by code.", "conn_closed_")
	fGoodbye        = codeFamily("unmap_control_goodbye_total", "Goodbyes received, by code.", "goodbye_")

	// TLS refusals, by pki's reason.
	fTLSRefused = tlsFamily()

	// Advisory messages dropped because the edge's queue was full, by type.
	fSendDropped          = controlMetrics.Family("unmap_control_send_dropped_total", "Advisory messages (icmp-error) dropped because the edge's send queue was full, by message type.", "type")
	mSendDroppedICMPError = fSendDropped.ValueNamed(proto.TypeICMPError.String(), "send_dropped_"+proto.TypeICMPError.String())

	// sendDropped are the advisory types, the messages a full queue drops.
	sendDropped = map[proto.Type]metrics.Counter{proto.TypeICMPError: mSendDroppedICMPError}
)

// codes is a family counted by protocol code: a counter per code SPEC
// defines, plus one for a code outside them (a peer's newer code).
type codes struct {
	fam     *metrics.Family
	byCode  []metrics.Counter
	unknown metrics.Counter
}

func codeFamily(name, help, prefix string) *codes {
	c := &codes{fam: controlMetrics.Family(name, help, "code")}
	for code := proto.Code(0); !strings.HasPrefix(code.String(), "code-"); code++ {
		c.byCode = append(c.byCode, c.fam.ValueNamed(code.String(), prefix+code.String()))
	}
	c.unknown = c.fam.ValueNamed("other", prefix+"other")
	return c
}

func (c *codes) of(code proto.Code) metrics.Counter {
	if int(code) < len(c.byCode) {
		return c.byCode[code]
	}
	return c.unknown
}

// tlsReasons are pki's reasons, the closed set of TLS refusals.
var tlsReasons = []pki.Reason{pki.ReasonNoCert, pki.ReasonBadCert, pki.ReasonExpired, pki.ReasonUnknownCA, pki.ReasonUsage, pki.ReasonNoSite, pki.ReasonWrongName, pki.ReasonInvalid}

type tlsRefusals struct {
	fam *metrics.Family
	by  map[pki.Reason]metrics.Counter
}

func tlsFamily() *tlsRefusals {
	t := &tlsRefusals{fam: controlMetrics.Family("unmap_control_tls_refused_total", "Certificates refused in the TLS handshake, by reason.", "reason"), by: map[pki.Reason]metrics.Counter{}}
	for _, r := range tlsReasons {
		v := strings.ReplaceAll(string(r), " ", "-")
		t.by[r] = t.fam.ValueNamed(v, "tls_refused_"+v)
	}
	return t
}

// MetricFamilies are the control channel's declared counters (for the
// documentation test and `unmap status`).
func MetricFamilies() []*metrics.Family { return controlMetrics.Families() }
