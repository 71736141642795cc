package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/tracking"
)

var _ tracking.Store = (*Store)(nil)

const (
	// sqlLockTrackedContact locks the contact a link names, or the
	// contact it was merged into.
	sqlLockTrackedContact = `
SELECT id, coalesce(email, ''), status FROM contacts
WHERE id = (SELECT coalesce(merged_into, id) FROM contacts WHERE id = $1)
FOR UPDATE`

	sqlTrackedContact = `
SELECT coalesce(c.email, ''), c.status,
       coalesce((SELECT sp.reason FROM suppressions sp WHERE sp.email = c.email AND sp.reason <> 'unsubscribed'), '')
FROM contacts c
WHERE c.id = (SELECT coalesce(merged_into, id) FROM contacts WHERE id = $1)`

	// sqlInsertTrackedEvent records an event Waymark itself observed, with
	// the send's sequence, step and template; $1 is the contact the link
	// names (the send's), the event goes to the contact it is now.
	sqlInsertTrackedEvent = `
INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
SELECT coalesce(c.merged_into, c.id), $2, 'internal', $3,
       coalesce((SELECT jsonb_strip_nulls(jsonb_build_object('send_id', s.id, 'sequence', s.sequence, 'step', s.step,
                                                             'template', s.template, 'offer', s.offer))
                 FROM sends s WHERE s.contact_id = $1 AND s.id = $4),
                CASE WHEN $4::bigint > 0 THEN jsonb_build_object('send_id', $4::bigint) ELSE '{}' END) || $5::jsonb,
       $6
FROM contacts c WHERE c.id = $1
ON CONFLICT (contact_id, message_id) DO NOTHING
RETURNING contact_id`

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

	// sqlSentAt: when the send went on the wire. A message is marked
	// 'sending' (claimed_at set) just before SMTP and gets sent_at only
	// after the server's answer, while a privacy proxy may fetch the
	// pixel in between: claimed_at stands in until then.
	sqlInsertLinkSecret = `INSERT INTO link_secret (secret) VALUES ($1) ON CONFLICT (id) DO NOTHING`
	sqlLinkSecret       = `SELECT secret FROM link_secret`

	sqlSentAt = `
SELECT coalesce(sent_at, CASE WHEN status IN ('sending', 'unknown') THEN claimed_at END)
FROM sends WHERE contact_id = $1 AND id = $2`
)

// trackErr translates errors for tracking.Store: a missing row is
// tracking.ErrNotFound.
func trackErr(err error, doing string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return tracking.ErrNotFound
	}
	return translate(err, doing)
}

func trackedMessageID(name string, sendID int64) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("waymark:%s:%d:%s", name, sendID, hex.EncodeToString(b[:]))
}

// insertTrackedEvent records event name for contactID (the send's
// contact), on the contact it is now (it may have been merged into
// another), and returns that contact; pgx.ErrNoRows if there is no such
// contact.
func insertTrackedEvent(ctx context.Context, db DB, contactID, sendID int64, name string, props map[string]any, at time.Time) (int64, error) {
	if props == nil {
		props = map[string]any{}
	}
	p, err := json.Marshal(props)
	if err != nil {
		return 0, fmt.Errorf("encoding the properties of %s: %w", name, err)
	}
	var id int64
	err = db.QueryRow(ctx, sqlInsertTrackedEvent, contactID, trackedMessageID(name, sendID), name, sendID, p, at).Scan(&id)
	return id, err
}

// Unsubscribe implements tracking.Store: in one transaction the contact
// becomes 'unsubscribed', the address is suppressed as 'unsubscribed',
// queued sends are cancelled (delayed_reason 'unsubscribed'), active
// enrolments exit (reason 'unsubscribed'), and an 'unsubscribed' event is
// recorded if the contact was subscribed.
func (s *Store) Unsubscribe(ctx context.Context, contactID, sendID int64, at time.Time) (int64, error) {
	var id int64
	err := s.inTx(ctx, "unsubscribing a contact", func(tx pgx.Tx) error {
		var email, status string
		if err := tx.QueryRow(ctx, sqlLockTrackedContact, contactID).Scan(&id, &email, &status); err != nil {
			return trackErr(err, "locking the contact")
		}
		ids := []int64{id}
		if id != contactID {
			ids = append(ids, contactID)
		}
		if status != "unsubscribed" {
			if _, err := tx.Exec(ctx, sqlUnsubscribeContact, id); err != nil {
				return err
			}
			if _, err := insertTrackedEvent(ctx, tx, contactID, sendID, "unsubscribed", nil, at); err != nil {
				return fmt.Errorf("recording the unsubscription: %w", err)
			}
			// Webhooks out, in the unsubscription's transaction.
			data := event(map[string]any{"contact_id": id, "email": email, "send_id": sendID, "at": at})
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
		if email != "" {
			if _, err := tx.Exec(ctx, sqlSuppressUnsubscribed, email, fmt.Sprintf("unsubscribe link of send %d", sendID)); err != nil {
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
		var email, status string
		if err := tx.QueryRow(ctx, sqlLockTrackedContact, contactID).Scan(&id, &email, &status); err != nil {
			return trackErr(err, "locking the contact")
		}
		if status != "subscribed" {
			if _, err := tx.Exec(ctx, sqlResubscribeContact, id); err != nil {
				return err
			}
			if _, err := insertTrackedEvent(ctx, tx, id, 0, "resubscribed", nil, at); err != nil {
				return fmt.Errorf("recording the resubscription: %w", err)
			}
		}
		if email != "" {
			if _, err := tx.Exec(ctx, sqlRemoveUnsubscribed, email); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}

// ContactEmail implements tracking.Store.
func (s *Store) ContactEmail(ctx context.Context, id int64) (email, status, blocked string, err error) {
	err = s.db.QueryRow(ctx, sqlTrackedContact, id).Scan(&email, &status, &blocked)
	return email, status, blocked, trackErr(err, "loading a contact's address")
}

// TrackEngagement implements tracking.Store: the event goes in with kind
// 'internal' and the send's send_id, sequence, step, template (and offer)
// added to props.
func (s *Store) TrackEngagement(ctx context.Context, contactID, sendID int64, name string, props map[string]any, at time.Time) (int64, error) {
	id, err := insertTrackedEvent(ctx, s.db, contactID, sendID, name, props, at)
	return id, trackErr(err, "recording "+name)
}

// SentAt implements tracking.Store.
func (s *Store) SentAt(ctx context.Context, contactID, sendID int64) (time.Time, error) {
	var at *time.Time
	if err := s.db.QueryRow(ctx, sqlSentAt, contactID, sendID).Scan(&at); err != nil {
		return time.Time{}, trackErr(err, "loading a send's time")
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}

// LinkSecret returns the key for signed links kept in the database; with
// generate, it is generated on first use (when WAYMARK_SECRET is not set),
// and every instance gets the same one; without, "" when there is none.
func (s *Store) LinkSecret(ctx context.Context, generate bool) (string, error) {
	if generate {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("generating the link secret: %w", err)
		}
		if _, err := s.db.Exec(ctx, sqlInsertLinkSecret, hex.EncodeToString(b[:])); err != nil {
			return "", translate(err, "storing the link secret")
		}
	}
	var secret string
	err := s.db.QueryRow(ctx, sqlLinkSecret).Scan(&secret)
	if !generate && errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return secret, translate(err, "loading the link secret")
}
