package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
)

// GiveStepOffer implements campaigns.SendStore: the send (a sequence step
// with `offer:`) gets the contact's coupon of the offer — from its pool, or
// generated — stored on the send before anything goes on the wire, so a
// retry, a restart or a second sender finds the same code and no code is
// given twice. "" when the pool is empty.
func (s *Store) GiveStepOffer(ctx context.Context, d *campaigns.Due, o campaigns.Offer, now time.Time) (string, time.Time, error) {
	var (
		code    string
		expires time.Time
	)
	err := s.inTx(ctx, "giving a step's coupon", func(tx pgx.Tx) error {
		code, expires = "", time.Time{}
		var (
			have *string
			exp  *time.Time
		)
		if err := tx.QueryRow(ctx, `SELECT offer_code, offer_expires FROM sends WHERE contact_id = $1 AND id = $2 FOR UPDATE`,
			d.ContactID, d.ID).Scan(&have, &exp); err != nil {
			return err
		}
		if have != nil {
			code = *have
			if exp != nil {
				expires = *exp
			}
			return nil
		}
		for attempt := 0; ; attempt++ {
			c, err := coupon(ctx, tx, o, d.ContactID, now)
			if err != nil || c == "" {
				return err
			}
			// A generated code must not repeat one already given (a pool's
			// codes are given once by coupon itself).
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM coupons WHERE offer = $1) AND (
				EXISTS (SELECT 1 FROM sends WHERE offer = $1 AND offer_code = $2)
				OR EXISTS (SELECT 1 FROM offer_draws WHERE offer = $1 AND code = $2))`, o.Name, c).Scan(&taken); err != nil {
				return err
			}
			if !taken {
				code = c
				break
			}
			if attempt == 5 {
				return errCodeSpace
			}
		}
		var e *time.Time
		if o.Valid > 0 {
			t := now.Add(o.Valid)
			e, expires = &t, t
		}
		_, err := tx.Exec(ctx, `UPDATE sends SET offer = $3, offer_code = $4, offer_expires = $5, updated_at = now()
			WHERE contact_id = $1 AND id = $2`, d.ContactID, d.ID, o.Name, code, e)
		return err
	})
	return code, expires, err
}

var errCodeSpace = errors.New("six generated coupon codes in a row were already given: make the offer's prefix or code longer")
