package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
)

// sqlEnrollable is the test sqlEnrol applies before enrolling
// (sqlEligible), read only: which candidates it would enrol now, as
// positions in the arrays.
const sqlEnrollable = `
WITH c AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::interval[], $6::bool[], $7::bool[], $8::bool[])
        WITH ORDINALITY AS c(contact_id, sequence, at, since, cooldown, once_per_stay, once_ever, once_per_occurrence, n)
)
SELECT c.n FROM c WHERE ` + sqlEligible

// Enrollable implements campaigns.PreviewStore.
func (s *Store) Enrollable(ctx context.Context, cands []campaigns.Enrolment) ([]campaigns.Enrolment, error) {
	el := newEligibility(cands)
	return pick(ctx, s.db, "previewing enrolments", cands, sqlEnrollable, el.ids, el.seqs, el.ats, el.since, el.cooldowns, el.perStay, el.ever, el.perO)
}

// pick runs query, which returns positions (from 1) in items, and returns
// those items.
func pick[T any](ctx context.Context, db DB, doing string, items []T, query string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, translate(err, doing)
	}
	ns, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, translate(err, doing)
	}
	out := make([]T, len(ns))
	for i, k := range ns {
		out[i] = items[k-1]
	}
	return out, nil
}

// sqlDrawable: the draws DrawOffers would record (none for a contact
// drawn for the offer within its cooldown, or ever without one).
const sqlDrawable = `
SELECT c.n FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::interval[]) WITH ORDINALITY AS c(contact_id, offer, at, cooldown, n)
WHERE NOT EXISTS (SELECT 1 FROM offer_draws d WHERE d.contact_id = c.contact_id AND d.offer = c.offer
    AND (c.cooldown = interval '0' OR d.at > c.at - c.cooldown))`

// Drawable implements campaigns.PreviewStore.
func (s *Store) Drawable(ctx context.Context, draws []campaigns.Draw) ([]campaigns.Draw, error) {
	n := len(draws)
	ids, offers, ats, cooldowns := make([]int64, n), make([]string, n), make([]time.Time, n), make([]time.Duration, n)
	for i, d := range draws {
		ids[i], offers[i], ats[i], cooldowns[i] = d.ContactID, d.Offer.Name, d.At, d.Offer.Cooldown
	}
	return pick(ctx, s.db, "previewing offers", draws, sqlDrawable, ids, offers, ats, cooldowns)
}
