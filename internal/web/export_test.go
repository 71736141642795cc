package web

// HoldDryRun takes the dry-run token as a running dry run does, so a test
// can ask for a second one meanwhile; release gives it back.
func HoldDryRun(s *Server) (release func()) {
	s.dryRuns <- struct{}{}
	return func() { <-s.dryRuns }
}
