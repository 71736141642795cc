package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/bounce"
)

var (
	_ bounce.Store = (*Store)(nil)
	_ bounce.Sends = (*Store)(nil)
)

const (
	// sqlInsertNonce remembers a signed request's one-time value; no row
	// back means it was seen before.
	sqlInsertNonce = `
INSERT INTO webhook_nonces (provider, nonce, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (provider, nonce) DO NOTHING
RETURNING true`

	sqlPruneNonces = `DELETE FROM webhook_nonces WHERE provider = $1 AND expires_at < $2`

	// sqlInsertReport records a report once; no row back means it was
	// recorded before.
	sqlInsertReport = `
INSERT INTO delivery_reports (provider, report_id, kind, bounce_type, email, message_id, detail, occurred_at)
VALUES ($1, $2, $3, nullif($4, ''), $5, nullif($6, ''), nullif($7, ''), $8)
ON CONFLICT (provider, report_id) DO NOTHING
RETURNING true`

	// sqlReportSend finds the send a Waymark Message-ID names, and the
	// contact it is on now (the send's, or the one it was merged into).
	sqlReportSend = `
SELECT coalesce(c.merged_into, c.id)
FROM sends s JOIN contacts c ON c.id = s.contact_id
WHERE s.contact_id = $1 AND s.id = $2 AND s.message_id = $3`

	sqlReportContacts = `SELECT id FROM contacts WHERE email = $1 AND merged_into IS NULL ORDER BY id`

	sqlTieReport = `UPDATE delivery_reports SET contact_id = $3, send_id = nullif($4, 0) WHERE provider = $1 AND report_id = $2`

	// sqlLockAddress serialises soft-bounce counting per address.
	sqlLockAddress = `SELECT pg_advisory_xact_lock(hashtextextended('waymark soft bounces ' || $1, 0))`

	sqlCountSoftBounces = `
SELECT count(*) FROM delivery_reports
WHERE email = $1 AND kind = 'bounce' AND bounce_type = 'soft' AND occurred_at > $2`
)

// reportTarget is where a report's event goes: the send's contact, or
// the contacts of the address.
type reportTarget struct {
	contacts []int64
	// contactID and sendID are the send's, when the Message-ID names one:
	// the event carries the send's sequence, step and template.
	contactID, sendID int64
}

// RecordReports implements bounce.Store.
func (s *Store) RecordReports(ctx context.Context, rs []bounce.Report, opts bounce.RecordOptions) (bounce.Recorded, error) {
	var out bounce.Recorded
	err := s.inTx(ctx, "recording delivery reports", func(tx pgx.Tx) error {
		out = bounce.Recorded{}
		if n := opts.Nonce; n != nil {
			if _, err := tx.Exec(ctx, sqlPruneNonces, n.Provider, opts.Now); err != nil {
				return err
			}
			var fresh bool
			err := tx.QueryRow(ctx, sqlInsertNonce, n.Provider, n.Value, n.Expires).Scan(&fresh)
			if errors.Is(err, pgx.ErrNoRows) {
				return bounce.ErrReplayed
			}
			if err != nil {
				return err
			}
		}
		var hooks webhookEvents
		for _, r := range rs {
			if err := s.recordReport(ctx, tx, r, opts, &out, &hooks); err != nil {
				return fmt.Errorf("report %s/%s: %w", r.Provider, r.ID, err)
			}
		}
		return hooks.queue(ctx, tx)
	})
	if errors.Is(err, bounce.ErrReplayed) {
		return bounce.Recorded{}, bounce.ErrReplayed
	}
	return out, err
}

func (s *Store) recordReport(ctx context.Context, tx pgx.Tx, r bounce.Report, opts bounce.RecordOptions, out *bounce.Recorded, hooks *webhookEvents) error {
	mid := ""
	if len(r.MessageIDs) > 0 {
		mid = r.MessageIDs[0]
	}
	if w, ok := bounce.WaymarkMessageID(r.MessageIDs); ok {
		mid = w.Local
	}
	var fresh bool
	err := tx.QueryRow(ctx, sqlInsertReport, r.Provider, r.ID, string(r.Kind), r.BounceType, r.Email, mid, r.Detail, r.At).Scan(&fresh)
	if errors.Is(err, pgx.ErrNoRows) {
		out.Duplicates++
		return nil
	}
	if err != nil {
		return err
	}
	out.New++
	t, err := reportTargetOf(ctx, tx, r)
	if err != nil {
		return err
	}
	if len(t.contacts) > 0 {
		if _, err := tx.Exec(ctx, sqlTieReport, r.Provider, r.ID, t.contacts[0], t.sendID); err != nil {
			return err
		}
	}
	name := r.Kind.Event()
	for _, c := range t.contacts {
		props := r.Properties()
		p, err := json.Marshal(props)
		if err != nil {
			return err
		}
		// The send's contact when the Message-ID names a send (the event
		// goes to the contact it is now, with the send's details);
		// otherwise each contact of the address.
		on, send := c, int64(0)
		if t.sendID != 0 {
			on, send = t.contactID, t.sendID
		}
		var id int64
		err = tx.QueryRow(ctx, sqlInsertTrackedEvent, on, "report:"+r.Provider+":"+r.ID, name, send, p, r.At).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("recording %s: %w", name, err)
		}
		if send != 0 {
			props["send_id"] = send
		}
		out.Events = append(out.Events, bounce.Event{ContactID: id, Name: name, Properties: props, At: r.At})
		// Webhooks out (bounces and complaints), queued with the
		// others' after the reports, in their transaction.
		if name == "email_bounced" || name == "email_complained" {
			data := map[string]any{"contact_id": id, "email": r.Email, "provider": r.Provider, "at": r.At}
			for k, v := range props {
				data[k] = v
			}
			hooks.add(name, r.At, event(data))
		}
	}
	reason, why, err := suppressionFor(ctx, tx, r, opts)
	if err != nil || reason == "" {
		return err
	}
	tag, err := tx.Exec(ctx, sqlSuppress, r.Email, reason, why)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > 0 {
		out.Suppressed++
	}
	tag, err = tx.Exec(ctx, sqlSuppressSends, r.Email, reason)
	if err != nil {
		return err
	}
	out.Cancelled += int(tag.RowsAffected())
	return nil
}

// reportTargetOf finds where r's event goes: the send its Waymark
// Message-ID names (if that send exists here, with that Message-ID),
// else every contact of its address.
func reportTargetOf(ctx context.Context, tx pgx.Tx, r bounce.Report) (reportTarget, error) {
	if w, ok := bounce.WaymarkMessageID(r.MessageIDs); ok {
		var current int64
		err := tx.QueryRow(ctx, sqlReportSend, w.ContactID, w.SendID, w.Local).Scan(&current)
		if err == nil {
			return reportTarget{contacts: []int64{current}, contactID: w.ContactID, sendID: w.SendID}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return reportTarget{}, err
		}
	}
	rows, err := tx.Query(ctx, sqlReportContacts, r.Email)
	if err != nil {
		return reportTarget{}, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return reportTarget{contacts: ids}, err
}

// suppressionFor says whether r suppresses its address, with what reason
// and detail: a hard bounce or a complaint always; a soft bounce when it
// makes opts.SoftLimit soft bounces of the address within opts.SoftWindow.
func suppressionFor(ctx context.Context, tx pgx.Tx, r bounce.Report, opts bounce.RecordOptions) (reason, detail string, err error) {
	via := fmt.Sprintf("%s report %s", r.Provider, r.ID)
	if r.Detail != "" {
		via += ": " + r.Detail
	}
	switch {
	case r.Kind == bounce.Complained:
		return "complaint", via, nil
	case r.Kind == bounce.Bounced && r.BounceType == bounce.Hard:
		return "hard_bounce", via, nil
	case r.Kind != bounce.Bounced || opts.SoftLimit <= 0:
		return "", "", nil
	}
	if _, err := tx.Exec(ctx, sqlLockAddress, r.Email); err != nil {
		return "", "", err
	}
	var n int
	since := opts.Now.Add(-opts.SoftWindow)
	if err := tx.QueryRow(ctx, sqlCountSoftBounces, r.Email, since).Scan(&n); err != nil {
		return "", "", err
	}
	if n < opts.SoftLimit {
		return "", "", nil
	}
	return "soft_bounce", fmt.Sprintf("%d soft bounces in %s (last: %s)", n, window(opts.SoftWindow), via), nil
}

// window writes a duration in days when it is whole days.
func window(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// ReturnedSend implements bounce.Sends: the recipient and stored
// Message-ID of a send a returned email is about; bounce.ErrNoSend when
// there is no such send, or it never went out.
func (s *Store) ReturnedSend(ctx context.Context, contactID, sendID int64) (recipient, messageID string, err error) {
	type row struct {
		Recipient string `db:"recipient"`
		MessageID string `db:"message_id"`
	}
	r, err := queryRow[row](ctx, s.db, `SELECT recipient, message_id FROM sends
		WHERE contact_id = $1 AND id = $2 AND recipient IS NOT NULL AND message_id IS NOT NULL`, contactID, sendID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", bounce.ErrNoSend
	}
	if err != nil {
		return "", "", translate(err, "reading a returned send")
	}
	return r.Recipient, r.MessageID, nil
}
