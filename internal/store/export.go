package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/export"
)

const (
	// sqlExportCursor reads the contacts to export in id order (the
	// primary key's order: no sort, whatever the count) through a
	// server-side cursor, so they come a page at a time.
	sqlExportCursor = `
DECLARE export_contacts NO SCROLL CURSOR FOR
SELECT id, user_id, email, stage, stage_entered_at AS since, status, traits
FROM contacts
WHERE merged_into IS NULL AND ($1::text = '' OR stage = $1::text)
ORDER BY id`

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
	if _, err := tx.Exec(ctx, sqlExportCursor, q.Stage); err != nil {
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
