package store

import (
	"context"

	"github.com/waymark/waymark/internal/contact"
)

// ContactTimeline returns a contact's moves, emails (with opens and
// clicks), offer draws, enrolments, conversions and its latest maxEvents
// events; every query is by contact_id.
func (s *Store) ContactTimeline(ctx context.Context, id int64, maxEvents int) (contact.Timeline, error) {
	var t contact.Timeline
	var err error
	if t.Moves, err = s.History(ctx, id); err != nil {
		return t, err
	}
	if t.Events, err = queryRows[contact.TimelineEvent](ctx, s.db, `SELECT name, kind, properties, occurred_at AS at FROM events WHERE contact_id = $1
		ORDER BY occurred_at DESC LIMIT $2`, id, maxEvents); err != nil {
		return t, translate(err, "reading a contact's events")
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE contact_id = $1`, id).Scan(&t.EventsTotal); err != nil {
		return t, translate(err, "counting a contact's events")
	}
	if t.Sends, err = queryRows[contact.TimelineSend](ctx, s.db, `
SELECT s.id, coalesce(s.sequence, '') AS sequence, CASE WHEN s.sequence IS NULL THEN 0 ELSE s.step + 1 END AS step,
       coalesce(s.offer, '') AS offer, coalesce(s.offer_code, '') AS offer_code, s.template, coalesce(s.template_version, 0) AS template_version,
       s.status, coalesce(s.tone, '') AS tone, coalesce(s.tone_reason, '') AS tone_reason, s.due_at, s.sent_at,
       coalesce(s.delayed_reason, '') AS delayed_reason, coalesce(s.smtp_response, '') AS smtp_response,
       coalesce(e.opens, 0) AS opens, coalesce(e.clicks, 0) AS clicks
FROM sends s
LEFT JOIN (
    SELECT properties->>'send_id' AS send_id, count(*) FILTER (WHERE name = 'email_opened') AS opens,
           count(*) FILTER (WHERE name = 'email_clicked') AS clicks
    FROM events WHERE contact_id = $1 AND name IN ('email_opened', 'email_clicked') GROUP BY 1
) e ON e.send_id = s.id::text
WHERE s.contact_id = $1 ORDER BY s.due_at, s.id`, id); err != nil {
		return t, translate(err, "reading a contact's emails")
	}
	if t.Draws, err = queryRows[contact.TimelineDraw](ctx, s.db, `SELECT offer, drawn, coalesce(code, '') AS code, expires_at, at FROM offer_draws WHERE contact_id = $1 ORDER BY at`, id); err != nil {
		return t, translate(err, "reading a contact's offers")
	}
	t.Enrolments, err = queryRows[contact.TimelineEnrolment](ctx, s.db, `SELECT id, sequence, version, status, coalesce(reason, '') AS reason, enrolled_at, ended_at FROM enrolments WHERE contact_id = $1 ORDER BY enrolled_at, id`, id)
	if err != nil {
		return t, translate(err, "reading a contact's enrolments")
	}
	t.Conversions, err = s.Conversions(ctx, id)
	return t, err
}

// History returns a contact's stage moves, oldest first.
func (s *Store) History(ctx context.Context, contactID int64) ([]contact.Transition, error) {
	out, err := queryRows[contact.Transition](ctx, s.db, `SELECT from_stage, to_stage, rule, rule_version, observed, trigger, at, contact_id, '' AS identifier
		FROM transitions WHERE contact_id = $1 ORDER BY seq`, contactID)
	return out, translate(err, "reading history")
}
