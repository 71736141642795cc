package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/lifecycle"
)

// Park implements lifecycle.Parker: each contact is recorded with its
// reason (since stays the first time it was parked).
func (s *Store) Park(ctx context.Context, ps []lifecycle.Parked) error {
	ids := make([]int64, len(ps))
	reasons := make([]string, len(ps))
	ats := make([]time.Time, len(ps))
	for i, p := range ps {
		ids[i], reasons[i], ats[i] = p.ID, p.Reason, p.At
	}
	_, err := s.db.Exec(ctx, `INSERT INTO parked_contacts (contact_id, reason, since)
SELECT DISTINCT ON (id) id, reason, at FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(id, reason, at) ORDER BY id
ON CONFLICT (contact_id) DO UPDATE SET reason = EXCLUDED.reason, updated_at = now()`, ids, reasons, ats)
	return translate(err, "parking contacts")
}

// Unpark implements lifecycle.Parker.
func (s *Store) Unpark(ctx context.Context, ids []int64) error {
	_, err := s.db.Exec(ctx, `DELETE FROM parked_contacts WHERE contact_id = ANY($1::bigint[])`, ids)
	return translate(err, "unparking contacts")
}

// ParkedContacts implements lifecycle.Parker.
func (s *Store) ParkedContacts(ctx context.Context) (map[int64]string, error) {
	parked, err := queryRows[parkedRow](ctx, s.db, `SELECT contact_id, reason FROM parked_contacts`)
	out := make(map[int64]string, len(parked))
	for _, p := range parked {
		out[p.ContactID] = p.Reason
	}
	return out, translate(err, "loading parked contacts")
}

// parkedRow is a parked contact and why.
type parkedRow struct {
	ContactID int64  `db:"contact_id"`
	Reason    string `db:"reason"`
}

// ContactParking returns why the contact is parked; nil if it is not.
func (s *Store) ContactParking(ctx context.Context, id int64) (*contact.Parking, error) {
	rows, err := s.db.Query(ctx, `SELECT reason, since FROM parked_contacts WHERE contact_id = $1`, id)
	if err != nil {
		return nil, translate(err, "reading a contact's parking")
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[contact.Parking])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "reading a contact's parking")
	}
	return p, nil
}

// PageIDs implements lifecycle.Pager: the ids of the page of a pass over
// every contact that LoadFacts loads for the same cursor and limit.
func (s *Store) PageIDs(ctx context.Context, after int64, limit int, asOf time.Time) ([]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM contacts c WHERE c.id > $1 AND c.merged_into IS NULL AND c.created_at <= $2 ORDER BY c.id LIMIT $3`, after, asOf, limit)
	if err != nil {
		return nil, translate(err, "listing a page of contacts")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, translate(err, "listing a page of contacts")
}
