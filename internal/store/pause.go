package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
)

const (
	// sqlHoldPaused moves a paused sequence's queued sends (not those a
	// sender holds claimed: it sees the pause itself) to wait, keeping
	// their due time.
	sqlHoldPaused = sqlHoldPausedBy + `sequence = $1`

	// sqlHoldPausedBy, followed by which sends ($1 names what is paused),
	// is the statement a pause holds sends with: a sequence's, a
	// broadcast's.
	sqlHoldPausedBy = `
UPDATE sends SET paused_due_at = due_at, due_at = $2, delayed_reason = $3, updated_at = now()
WHERE status = 'queued' AND claimed_by IS NULL AND paused_due_at IS NULL AND `

	// sqlReleasePaused gives a resumed sequence's waiting sends their due
	// time back, or the time of resuming ($2) for those it has passed (they
	// go out at the next sender pass: a pause is the marketer's decision,
	// not lateness that sending: late_expiry would expire), and sends a
	// sender held back while it was paused that time too.
	sqlReleasePaused = `
UPDATE sends SET due_at = greatest(coalesce(paused_due_at, $2), $2), paused_due_at = NULL, delayed_reason = NULL, updated_at = now()
WHERE sequence = $1 AND status = 'queued' AND (paused_due_at IS NOT NULL OR delayed_reason = $3)`
)

// PauseSequence pauses the sequence name: it enrols nobody and its queued
// sends wait, none dropped, until ResumeSequence. It returns how many sends
// now wait; ErrNotFound when there is no such sequence. Pausing a paused
// sequence holds what was queued since.
func (s *Store) PauseSequence(ctx context.Context, name string) (int, error) {
	var n int
	err := s.inTx(ctx, "pausing sequence "+name, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sequences WHERE name = $1)`, name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return pgx.ErrNoRows
		}
		if _, err := tx.Exec(ctx, `INSERT INTO paused_sequences (name) VALUES ($1) ON CONFLICT DO NOTHING`, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlHoldPaused, name, campaigns.PausedUntil, campaigns.PausedReason); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM sends WHERE sequence = $1 AND status = 'queued'`, name).Scan(&n)
	})
	return n, err
}

// ResumeSequence resumes a paused sequence: it enrols again, and its
// waiting sends get their due time back. It returns how many were
// released; ErrNotFound when the sequence is not paused.
func (s *Store) ResumeSequence(ctx context.Context, name string, now time.Time) (int, error) {
	var n int
	err := s.inTx(ctx, "resuming sequence "+name, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM paused_sequences WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		tag, err = tx.Exec(ctx, sqlReleasePaused, name, now, campaigns.PausedReason)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

// PausedSequences lists the paused sequences with their waiting sends.
func (s *Store) PausedSequences(ctx context.Context) ([]campaigns.PausedSequence, error) {
	out, err := queryRows[campaigns.PausedSequence](ctx, s.db, `SELECT p.name, p.paused_at,
    (SELECT count(*) FROM sends s WHERE s.sequence = p.name AND s.status = 'queued')::int AS waiting
FROM paused_sequences p ORDER BY p.name`)
	return out, translate(err, "listing paused sequences")
}
