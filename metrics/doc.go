// Package metrics is what the two agents share of their Prometheus
// metrics: counter declarations with closed label sets (Set, Family,
// Counter), the per-agent values behind them (Counters), the collector of
// the datapath's per-CPU reason counters (Reasons), and the HTTP server
// of `metrics_listen` (Serve).
//
// Every counter is declared once, in one file per agent (edge/metrics.go,
// relay/metrics.go, control/metrics.go), with its help text and labels.
// Call sites count through the declared handle, never a string; `unmap
// status` shows the same values under their readable names (the label
// value, or the counter's short name), so the status and /metrics cannot
// disagree. OPERATING.md lists every metric; a test checks the list
// against the declarations.
package metrics
