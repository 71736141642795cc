package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Engagement: the opens, clicks and other events Waymark itself observes
// on the emails it sent (tracking.Store).

const (
	// sqlInsertTrackedEvent records an event Waymark itself observed, with
	// the send's sequence, step and template; $1 is the contact the link
	// names (the send's), the event goes to the contact it is now.
	sqlInsertTrackedEvent = `
INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
SELECT coalesce(c.merged_into, c.id), $2, 'internal', $3,
       coalesce((SELECT jsonb_strip_nulls(jsonb_build_object('send_id', s.id, 'sequence', s.sequence, 'step', CASE WHEN s.broadcast IS NULL THEN s.step END,
                                                             'template', s.template, 'offer', s.offer,
                                                             'broadcast', s.broadcast, 'variant', s.variant + 1))
                 FROM sends s WHERE s.contact_id = $1 AND s.id = $4),
                CASE WHEN $4::bigint > 0 THEN jsonb_build_object('send_id', $4::bigint) ELSE '{}' END) || $5::jsonb,
       $6
FROM contacts c WHERE c.id = $1
ON CONFLICT (contact_id, message_id) DO NOTHING
RETURNING contact_id`

	// sqlSentAt: when the send went on the wire. A message is marked
	// 'sending' (claimed_at set) just before SMTP and gets sent_at only
	// after the server's answer, while a privacy proxy may fetch the
	// pixel in between: claimed_at stands in until then.
	sqlSentAt = `
SELECT coalesce(sent_at, CASE WHEN status IN ('sending', 'unknown') THEN claimed_at END)
FROM sends WHERE contact_id = $1 AND id = $2`
)

// trackedMessageID is the message id of an event Waymark observed: its
// name, the send, and random bits (two opens of an email are two events).
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
