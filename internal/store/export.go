package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/export"
)

const (
	// sqlExportCursor reads the contacts to export in id order (the
	// primary key's order: no sort, whatever the count) through a
	// server-side cursor, so they come a page at a time.
	//
	// Each contact's segments are read from segment_members by key; with
	// a segment ($2), only its members.
	sqlExportCursor = `
DECLARE export_contacts NO SCROLL CURSOR FOR
SELECT c.id, c.user_id, c.email, c.stage, c.stage_entered_at AS since, c.status, c.traits,
       ARRAY(SELECT m.segment FROM segment_members m WHERE m.contact_id = c.id ORDER BY m.segment) AS segments
FROM contacts c
WHERE c.merged_into IS NULL AND ($1::text = '' OR c.stage = $1::text)
  AND ($2::text = '' OR EXISTS (SELECT 1 FROM segment_members m WHERE m.contact_id = c.id AND m.segment = $2::text))
ORDER BY c.id`

	sqlExportFetch = `FETCH FORWARD 1000 FROM export_contacts`

	// ExportPage is how many contacts a page holds.
	ExportPage = 1000
)

// ExportContacts hands the contacts q names to page, ExportPage at a time
// in id order, from one snapshot (a read-only repeatable-read
// transaction): an export is consistent however long it takes, and holds
// one page in memory whatever the count.
func (s *Store) ExportContacts(ctx context.Context, q export.Query, page func([]export.Contact) error) error {
	var (
		tx  pgx.Tx
		err error
	)
	if b, ok := s.db.(beginner); ok {
		tx, err = b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	} else {
		tx, err = s.db.Begin(ctx)
	}
	if err != nil {
		return translate(err, "starting an export")
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if q.Segment != "" {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM segments WHERE name = $1)`, q.Segment).Scan(&exists); err != nil {
			return translate(err, "starting an export")
		}
		if !exists {
			return notFoundErr{fmt.Errorf("segment: no segment %q: %w", q.Segment, campaigns.ErrNoSegment)}
		}
	}
	if _, err := tx.Exec(ctx, sqlExportCursor, q.Stage, q.Segment); err != nil {
		return translate(err, "opening the export's cursor")
	}
	for {
		cs, err := queryRows[export.Contact](ctx, tx, sqlExportFetch)
		if err != nil {
			return translate(err, "reading contacts to export")
		}
		if len(cs) > 0 {
			if err := page(cs); err != nil {
				return err
			}
		}
		if len(cs) < ExportPage {
			return nil
		}
	}
}
