package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EmailHash is how an erased address is remembered: enough to refuse it
// again, not enough to read it.
const sqlEmailHash = `'sha256:' || encode(sha256(convert_to(lower($1::text), 'UTF8')), 'hex')`

// Erase removes a contact's personal data and activity — the contact, its
// identities, events, stage moves, enrolments, sends, offer draws, parking
// and the reports' rows of them — and keeps only a suppression entry holding a hash of its
// address, so the address is never mailed again, even if it is imported
// again.
func (s *Store) Erase(ctx context.Context, contactID int64) (string, error) {
	var email string
	err := s.inTx(ctx, "erasing the contact", func(tx pgx.Tx) error {
		var e *string
		if err := tx.QueryRow(ctx, `SELECT email FROM contacts WHERE id = $1 FOR UPDATE`, contactID).Scan(&e); err != nil {
			return err
		}
		if e != nil && *e != "" {
			email = *e
			if _, err := tx.Exec(ctx, `INSERT INTO suppressions (email, reason, detail) VALUES (`+sqlEmailHash+`, 'erased', 'erased on request')
				ON CONFLICT (email) DO NOTHING`, email); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM suppressions WHERE email = lower($1)`, email); err != nil {
				return err
			}
		}
		// Contacts merged into this one are the same person.
		ids := []int64{contactID}
		rows, err := tx.Query(ctx, `SELECT id FROM contacts WHERE merged_into = $1`, contactID)
		if err != nil {
			return err
		}
		merged, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		ids = append(ids, merged...)
		for _, table := range []string{"events", "activity", "transitions", "sends", "enrolments", "offer_draws", "identities", "parked_contacts", "segment_members", "conversions",
			// The reports' rows of its emails, draws and moves (the sums
			// they were added to keep counting them, as figures of no one).
			"report_emails", "report_draws", "report_moves"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE contact_id = ANY($1::bigint[])`, ids); err != nil {
				return fmt.Errorf("erasing %s: %w", table, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE coupons SET contact_id = NULL WHERE contact_id = ANY($1::bigint[])`, ids); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM contacts WHERE id = ANY($1::bigint[])`, ids)
		return err
	})
	return email, err
}

// Export returns everything stored about a contact, as JSON.
func (s *Store) Export(ctx context.Context, contactID int64) ([]byte, error) {
	q := func(sql string) string {
		return `coalesce((SELECT jsonb_agg(to_jsonb(x)) FROM (` + sql + `) x), '[]'::jsonb)`
	}
	var out []byte
	err := s.db.QueryRow(ctx, `SELECT jsonb_build_object(
		'contact', (SELECT to_jsonb(c) FROM contacts c WHERE c.id = $1),
		'identities', `+q(`SELECT identity FROM identities WHERE contact_id = $1 ORDER BY identity`)+`,
		'events', `+q(`SELECT message_id, kind, name, properties, context, occurred_at, received_at FROM events WHERE contact_id = $1 ORDER BY occurred_at, message_id`)+`,
		'stage_moves', `+q(`SELECT from_stage, to_stage, rule, rule_version, observed, trigger, at FROM transitions WHERE contact_id = $1 ORDER BY seq`)+`,
		'enrolments', `+q(`SELECT id, sequence, version, status, reason, enrolled_at, ended_at FROM enrolments WHERE contact_id = $1 ORDER BY id`)+`,
		'emails', `+q(`SELECT id, sequence, step, broadcast, variant, template, template_version, tone, tone_reason, offer, offer_code, status, recipient, message_id, smtp_response, attempts, due_at, sent_at FROM sends WHERE contact_id = $1 ORDER BY id`)+`,
		'segments', `+q(`SELECT segment, since FROM segment_members WHERE contact_id = $1 ORDER BY segment`)+`,
		'offer_draws', `+q(`SELECT offer, drawn, code, expires_at, at FROM offer_draws WHERE contact_id = $1 ORDER BY at`)+`,
		'suppressions', `+q(`SELECT sp.email, sp.reason, sp.detail, sp.created_at FROM suppressions sp JOIN contacts c ON c.id = $1 WHERE sp.email = c.email`)+`
	) WHERE EXISTS (SELECT 1 FROM contacts WHERE id = $1)`, contactID).Scan(&out)
	if err != nil {
		return nil, translate(err, "exporting the contact")
	}
	var pretty json.RawMessage = out
	return json.MarshalIndent(pretty, "", "  ")
}
