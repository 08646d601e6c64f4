// Package ops holds end-to-end tests (see test/e2e): what an operator
// lives through: restarts of either agent (clean or crashed) and control
// outages with the flows kept, the metrics scraped in the lab, the
// start-up warnings.
package ops
