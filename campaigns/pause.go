package campaigns

import "time"

// A paused sequence (Definitions.Paused) enrols nobody, and its sends wait
// — without expiring — until it is resumed; none is dropped.
const PausedReason = "sequence paused"

// PausedUntil is the due time of a paused sequence's sends: never, until
// resumed (which gives them back their own).
var PausedUntil = time.Date(9999, time.December, 31, 0, 0, 0, 0, time.UTC)

// PausedSequence is a sequence paused by hand.
type PausedSequence struct {
	Name     string    `db:"name"`
	PausedAt time.Time `db:"paused_at"`
	// Waiting are its queued sends, held until it is resumed.
	Waiting int `db:"waiting"`
}
