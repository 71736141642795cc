package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/contact"
)

// Suppressions: addresses never sent to.

const (
	// sqlSuppress adds an address; a stronger reason replaces an
	// 'unsubscribed' one (which a resubscribe could otherwise remove),
	// any other existing reason stays.
	sqlSuppress = `
INSERT INTO suppressions (email, reason, detail) VALUES ($1, $2, nullif($3, ''))
ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, created_at = now()
WHERE suppressions.reason = 'unsubscribed' AND excluded.reason <> 'unsubscribed'`

	// sqlSuppressSends ends the active enrolments of the address's
	// contacts and cancels their queued sends.
	sqlSuppressSends = `
WITH k AS (SELECT id FROM contacts WHERE email = $1),
ended AS (
    UPDATE enrolments e SET status = 'exited', reason = 'suppressed: ' || $2, ended_at = now()
    FROM k WHERE e.contact_id = k.id AND e.status = 'active'
    RETURNING e.id)
UPDATE sends s SET status = 'cancelled', delayed_reason = $2, updated_at = now()
FROM k WHERE s.contact_id = k.id AND s.status = 'queued'`
)

// Suppress implements tracking.Store.
func (s *Store) Suppress(ctx context.Context, email, reason, detail string) (int, error) {
	var n int
	err := s.inTx(ctx, "suppressing an address", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlSuppress, email, reason, detail); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sqlSuppressSends, email, reason)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return nil
	})
	return n, err
}

// Suppressions returns a page of the suppression list and the next page's
// cursor ("" at the end).
func (s *Store) Suppressions(ctx context.Context, sort, after string, limit int) ([]contact.Suppression, string, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	var sql string
	var args []any
	switch sort {
	case "", "-created_at":
		var at *time.Time
		email := ""
		if after != "" {
			us, e, ok := strings.Cut(after, ".")
			n, err := strconv.ParseInt(us, 10, 64)
			if !ok || err != nil {
				return nil, "", contact.ErrBadCursor
			}
			t := time.UnixMicro(n)
			at, email = &t, e
		}
		sql = `SELECT email, reason, coalesce(detail, '') AS detail, created_at FROM suppressions
			WHERE $1::timestamptz IS NULL OR (created_at, email) < ($1, $2) ORDER BY created_at DESC, email DESC LIMIT $3`
		args = []any{at, email, limit + 1}
	case "email":
		sql = `SELECT email, reason, coalesce(detail, '') AS detail, created_at FROM suppressions WHERE email > $1 ORDER BY email LIMIT $2`
		args = []any{after, limit + 1}
	default:
		return nil, "", fmt.Errorf("sort %q: %w", sort, contact.ErrBadCursor)
	}
	out, err := queryRows[contact.Suppression](ctx, s.db, sql, args...)
	if err != nil {
		return nil, "", translate(err, "listing suppressions")
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		if sort == "email" {
			next = last.Email
		} else {
			next = fmt.Sprintf("%d.%s", last.CreatedAt.UnixMicro(), last.Email)
		}
	}
	return out, next, nil
}

// Unsuppress removes a manual suppression; other reasons (unsubscribed,
// bounces, complaints, erasure) are not removed this way. It reports
// whether one was removed.
func (s *Store) Unsuppress(ctx context.Context, email string) (bool, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM suppressions WHERE email = lower($1) AND reason = 'manual'`, email)
	if err != nil {
		return false, translate(err, "removing a suppression")
	}
	return tag.RowsAffected() == 1, nil
}
