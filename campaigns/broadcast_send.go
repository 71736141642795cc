package campaigns

import "fmt"

// BroadcastDue is what a due send of a broadcast carries, loaded with the
// claim (empty for a sequence's or an offer's send). Everything else about
// it — tone, holds, suppressions, unsubscribes, the frequency cap shared
// with sequences, quiet hours, one address one email, late expiry, the
// crash behaviour — is a send's like any other.
type BroadcastDue struct {
	Broadcast    string
	BroadcastRun int64
	Variant      int
	// Subject is the subject line its A/B variant sets ("": the
	// template's own).
	Subject string
	// BroadcastState is the broadcast's state now ("" when it no longer
	// exists).
	BroadcastState string
}

// broadcastGate decides about a broadcast's send before the policies: it
// waits while the broadcast is paused (claimed just before the pause, or
// queued since), and is cancelled when the broadcast was cancelled or
// removed meanwhile.
func broadcastGate(d *Due) (delay *Delay, cancel string) {
	switch d.BroadcastState {
	case StatePaused:
		return &Delay{Due: d, Until: PausedUntil, Reason: BroadcastPausedReason}, ""
	case StateCancelled:
		return nil, "broadcast cancelled"
	case "":
		return nil, fmt.Sprintf("broadcast %s no longer exists", d.Broadcast)
	}
	return nil, ""
}

// WithSubject is t with an A/B test variant's subject line.
func (t StoredTemplate) WithSubject(subject string) StoredTemplate {
	return StoredTemplate{Template: WithSubject(t.Template, subject), Version: t.Version, Subject: subject}
}
