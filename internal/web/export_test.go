package web

import "github.com/waymark/waymark/internal/report"

// HoldDryRun takes the dry-run token as a running dry run does, so a test
// can ask for a second one meanwhile; release gives it back.
func HoldDryRun(s *Server) (release func()) {
	s.dryRuns <- struct{}{}
	return func() { <-s.dryRuns }
}

// ABTestHTML is an A/B test's margin in words and its chart, as the
// Reports page shows them.
func ABTestHTML(a report.ABTest) (string, string) {
	v := newABTestView(a)
	return v.MarginWords, string(variantSVG("variant-chart-1", v))
}
