package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/tracking"
)

// Subscriptions: a contact unsubscribed and resubscribed by its links,
// and the address the links act on (tracking.Store).

var _ tracking.Store = (*Store)(nil)

const (
	// sqlLockTrackedContact locks the contact a link names, or the
	// contact it was merged into.
	sqlLockTrackedContact = `
SELECT id, coalesce(email, '') AS email, status, '' AS blocked FROM contacts
WHERE id = (SELECT coalesce(merged_into, id) FROM contacts WHERE id = $1)
FOR UPDATE`

	sqlTrackedContact = `
SELECT c.id, coalesce(c.email, '') AS email, c.status,
       coalesce((SELECT sp.reason FROM suppressions sp WHERE sp.email = c.email AND sp.reason <> 'unsubscribed'), '') AS blocked
FROM contacts c
WHERE c.id = (SELECT coalesce(merged_into, id) FROM contacts WHERE id = $1)`

	sqlUnsubscribeContact = `UPDATE contacts SET status = 'unsubscribed', updated_at = now() WHERE id = $1`

	sqlResubscribeContact = `UPDATE contacts SET status = 'subscribed', updated_at = now() WHERE id = $1`

	sqlCancelContactSends = `
UPDATE sends SET status = 'cancelled', delayed_reason = $2, updated_at = now()
WHERE contact_id = ANY($1::bigint[]) AND status = 'queued'`

	sqlExitContactEnrolments = `
UPDATE enrolments SET status = 'exited', reason = $2, ended_at = $3
WHERE contact_id = ANY($1::bigint[]) AND status = 'active'`

	sqlSuppressUnsubscribed = `
INSERT INTO suppressions (email, reason, detail) VALUES ($1, 'unsubscribed', $2)
ON CONFLICT (email) DO NOTHING`

	sqlRemoveUnsubscribed = `DELETE FROM suppressions WHERE email = $1 AND reason = 'unsubscribed'`
)

// trackedContact is the contact a link names (or the one it was merged
// into): its address and status, and the suppression other than an
// unsubscription that blocks the address ("" if none; sqlTrackedContact
// only).
type trackedContact struct {
	ID      int64  `db:"id"`
	Email   string `db:"email"`
	Status  string `db:"status"`
	Blocked string `db:"blocked"`
}

// lockTracked locks the contact a link names (or the one it was merged
// into) until the transaction ends.
func lockTracked(ctx context.Context, tx pgx.Tx, contactID int64) (trackedContact, error) {
	c, err := queryRow[trackedContact](ctx, tx, sqlLockTrackedContact, contactID)
	return c, trackErr(err, "locking the contact")
}

// trackErr translates errors for tracking.Store: a missing row is
// tracking.ErrNotFound.
func trackErr(err error, doing string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return tracking.ErrNotFound
	}
	return translate(err, doing)
}

// Unsubscribe implements tracking.Store: in one transaction the contact
// becomes 'unsubscribed', the address is suppressed as 'unsubscribed',
// queued sends are cancelled (delayed_reason 'unsubscribed'), active
// enrolments exit (reason 'unsubscribed'), and an 'unsubscribed' event is
// recorded if the contact was subscribed.
func (s *Store) Unsubscribe(ctx context.Context, contactID, sendID int64, at time.Time) (int64, error) {
	var id int64
	err := s.inTx(ctx, "unsubscribing a contact", func(tx pgx.Tx) error {
		c, err := lockTracked(ctx, tx, contactID)
		if err != nil {
			return err
		}
		id = c.ID
		ids := []int64{id}
		if id != contactID {
			ids = append(ids, contactID)
		}
		if c.Status != "unsubscribed" {
			if _, err := tx.Exec(ctx, sqlUnsubscribeContact, id); err != nil {
				return err
			}
			if _, err := insertTrackedEvent(ctx, tx, contactID, sendID, "unsubscribed", nil, at); err != nil {
				return fmt.Errorf("recording the unsubscription: %w", err)
			}
			// Webhooks out, in the unsubscription's transaction.
			data := event(map[string]any{"contact_id": id, "email": c.Email, "send_id": sendID, "at": at})
			if _, err := tx.Exec(ctx, sqlQueueWebhooks, "unsubscribed", []time.Time{at}, [][]byte{data}); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, sqlCancelContactSends, ids, "unsubscribed"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlExitContactEnrolments, ids, "unsubscribed", at); err != nil {
			return err
		}
		if c.Email != "" {
			if _, err := tx.Exec(ctx, sqlSuppressUnsubscribed, c.Email, fmt.Sprintf("unsubscribe link of send %d", sendID)); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}

// Resubscribe implements tracking.Store: the contact is 'subscribed'
// again and the address's 'unsubscribed' suppression is removed; any
// other suppression (hard_bounce, complaint, manual, erased) stays. A
// 'resubscribed' event is recorded if the contact was unsubscribed.
func (s *Store) Resubscribe(ctx context.Context, contactID int64, at time.Time) (int64, error) {
	var id int64
	err := s.inTx(ctx, "resubscribing a contact", func(tx pgx.Tx) error {
		c, err := lockTracked(ctx, tx, contactID)
		if err != nil {
			return err
		}
		id = c.ID
		if c.Status != "subscribed" {
			if _, err := tx.Exec(ctx, sqlResubscribeContact, id); err != nil {
				return err
			}
			if _, err := insertTrackedEvent(ctx, tx, id, 0, "resubscribed", nil, at); err != nil {
				return fmt.Errorf("recording the resubscription: %w", err)
			}
		}
		if c.Email != "" {
			if _, err := tx.Exec(ctx, sqlRemoveUnsubscribed, c.Email); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}

// ContactEmail implements tracking.Store.
func (s *Store) ContactEmail(ctx context.Context, id int64) (email, status, blocked string, err error) {
	c, err := queryRow[trackedContact](ctx, s.db, sqlTrackedContact, id)
	return c.Email, c.Status, c.Blocked, trackErr(err, "loading a contact's address")
}
