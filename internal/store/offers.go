package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
)

// Offers: draws, coupons from a pool or generated, and a sequence step's
// coupon.

// DrawOffers implements campaigns.Store.
func (s *Store) DrawOffers(ctx context.Context, draws []campaigns.Draw) (int, error) {
	// By offer, in the order given: a handful of statements an offer,
	// whatever the number of draws (a first tick draws for every regular
	// at once: one round trip per statement per draw was 64% of its CPU).
	var order []string
	byOffer := map[string][]campaigns.Draw{}
	for _, d := range draws {
		if _, ok := byOffer[d.Offer.Name]; !ok {
			order = append(order, d.Offer.Name)
		}
		byOffer[d.Offer.Name] = append(byOffer[d.Offer.Name], d)
	}
	drawn := 0
	err := s.inTx(ctx, "drawing offers", func(tx pgx.Tx) error {
		drawn = 0
		for _, name := range order {
			n, err := drawOffer(ctx, tx, byOffer[name])
			if err != nil {
				return err
			}
			drawn += n
		}
		return nil
	})
	return drawn, err
}

// drawOffer records one offer's draws: those within the offer's cooldown
// of an earlier draw are skipped; the drawn get a code — from the pool,
// in the order given, until it runs dry (then recorded as not drawn, so
// nobody is promised a code they cannot get), or generated — and their
// email is queued.
func drawOffer(ctx context.Context, tx pgx.Tx, ds []campaigns.Draw) (int, error) {
	o := ds[0].Offer
	ids, ats := make([]int64, len(ds)), make([]time.Time, len(ds))
	for i, d := range ds {
		ids[i], ats[i] = d.ContactID, d.At
	}
	// Eligible again only after the cooldown (never, without one); each
	// contact's draws probed by key.
	rows, err := tx.Query(ctx, `SELECT v.n FROM unnest($1::bigint[], $2::timestamptz[]) WITH ORDINALITY AS v(contact_id, at, n)
		WHERE (SELECT EXISTS (SELECT 1 FROM offer_draws d WHERE d.contact_id = v.contact_id AND d.offer = $3
			AND ($4::interval = interval '0' OR d.at > v.at - $4::interval)))`, ids, ats, o.Name, o.Cooldown)
	if err != nil {
		return 0, err
	}
	recent, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	skip := make(map[int]bool, len(recent))
	for _, n := range recent {
		skip[int(n)-1] = true
	}
	var keep []campaigns.Draw
	wanted := 0
	once := make(map[int64]bool, len(ds))
	for i, d := range ds {
		if !skip[i] && !once[d.ContactID] { // a contact's first draw of the call
			once[d.ContactID] = true
			keep = append(keep, d)
			if d.Drawn {
				wanted++
			}
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	codes, pooled, err := coupons(ctx, tx, o, wanted)
	if err != nil {
		return 0, err
	}
	var (
		n          = len(keep)
		cids       = make([]int64, n)
		drawnFlags = make([]bool, n)
		codeCol    = make([]*string, n)
		expCol     = make([]*time.Time, n)
		atCol      = make([]time.Time, n)
		given      []int64 // pool codes given: contact, code
		givenCodes []string
		givenAts   []time.Time
		sendIDs    []int64
		sendCodes  []string
		sendExps   []*time.Time
		sendAts    []time.Time
		next       = 0
	)
	for i, d := range keep {
		cids[i], atCol[i] = d.ContactID, d.At
		if !d.Drawn {
			continue
		}
		var code string
		switch {
		case next < len(codes):
			code = codes[next]
			next++
			given, givenCodes, givenAts = append(given, d.ContactID), append(givenCodes, code), append(givenAts, d.At)
		case !pooled:
			code = o.Prefix + randomCode(10)
		default:
			continue // the pool ran dry: recorded as not drawn
		}
		drawnFlags[i] = true
		codeCol[i] = &code
		if o.Valid > 0 {
			t := d.At.Add(o.Valid)
			expCol[i] = &t
		}
		sendIDs, sendCodes, sendExps, sendAts = append(sendIDs, d.ContactID), append(sendCodes, code), append(sendExps, expCol[i]), append(sendAts, d.At)
	}
	if len(given) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE coupons c SET contact_id = v.contact_id, given_at = v.at
			FROM unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS v(code, contact_id, at)
			WHERE c.offer = $1 AND c.code = v.code`, o.Name, givenCodes, given, givenAts); err != nil {
			return 0, err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO offer_draws (contact_id, offer, drawn, code, expires_at, at)
		SELECT v.contact_id, $1, v.drawn, v.code, v.expires_at, v.at
		FROM unnest($2::bigint[], $3::bool[], $4::text[], $5::timestamptz[], $6::timestamptz[]) AS v(contact_id, drawn, code, expires_at, at)`,
		o.Name, cids, drawnFlags, codeCol, expCol, atCol); err != nil {
		return 0, err
	}
	if len(sendIDs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO sends (contact_id, offer, offer_code, offer_expires, step, template, due_at)
			SELECT v.contact_id, $1, v.code, v.expires, 0, $2, v.at
			FROM unnest($3::bigint[], $4::text[], $5::timestamptz[], $6::timestamptz[]) AS v(contact_id, code, expires, at)`,
			o.Name, o.Template, sendIDs, sendCodes, sendExps, sendAts); err != nil {
			return 0, err
		}
		// Webhooks out: offer_given, in the draw's transaction.
		data := make([][]byte, len(sendIDs))
		for i, id := range sendIDs {
			data[i] = event(map[string]any{"contact_id": id, "offer": o.Name, "code": sendCodes[i], "expires_at": sendExps[i], "at": sendAts[i]})
		}
		if _, err := tx.Exec(ctx, sqlQueueWebhooks, "offer_given", sendAts, data); err != nil {
			return 0, err
		}
	}
	return len(sendIDs), nil
}

// coupons takes up to n unused codes of the offer's pool, in order, locked
// until the transaction ends (another pass skips them), and says whether
// the offer has a pool at all (without one, codes are generated).
func coupons(ctx context.Context, tx pgx.Tx, o campaigns.Offer, n int) ([]string, bool, error) {
	var pooled bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM coupons WHERE offer = $1)`, o.Name).Scan(&pooled); err != nil || !pooled || n == 0 {
		return nil, pooled, err
	}
	rows, err := tx.Query(ctx, `SELECT code FROM coupons WHERE offer = $1 AND contact_id IS NULL ORDER BY code LIMIT $2 FOR UPDATE SKIP LOCKED`, o.Name, n)
	if err != nil {
		return nil, true, err
	}
	codes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return codes, true, err
}

// coupon gives the contact a code from the offer's pool, or a generated
// one when the offer has no pool; "" when the pool is empty.
func coupon(ctx context.Context, tx pgx.Tx, o campaigns.Offer, contact int64, at time.Time) (string, error) {
	codes, pooled, err := coupons(ctx, tx, o, 1)
	if err != nil {
		return "", err
	}
	if !pooled {
		return o.Prefix + randomCode(10), nil
	}
	if len(codes) == 0 {
		return "", nil
	}
	_, err = tx.Exec(ctx, `UPDATE coupons SET contact_id = $3, given_at = $4 WHERE offer = $1 AND code = $2`, o.Name, codes[0], contact, at)
	return codes[0], err
}

// randomCode is n characters from an alphabet without look-alikes.
func randomCode(n int) string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
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
		given, err := queryRow[stepCoupon](ctx, tx, `SELECT offer_code, offer_expires FROM sends WHERE contact_id = $1 AND id = $2 FOR UPDATE`,
			d.ContactID, d.ID)
		if err != nil {
			return err
		}
		if given.Code != nil {
			code = *given.Code
			if given.Expires != nil {
				expires = *given.Expires
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
		_, err = tx.Exec(ctx, `UPDATE sends SET offer = $3, offer_code = $4, offer_expires = $5, updated_at = now()
			WHERE contact_id = $1 AND id = $2`, d.ContactID, d.ID, o.Name, code, e)
		return err
	})
	return code, expires, err
}

// stepCoupon is the coupon a send already has, if any.
type stepCoupon struct {
	Code    *string    `db:"offer_code"`
	Expires *time.Time `db:"offer_expires"`
}

var errCodeSpace = errors.New("six generated coupon codes in a row were already given: make the offer's prefix or code longer")

// applyOffers stores the journey's offers (their definitions; their
// pools of codes in coupons) and removes the others.
func applyOffers(ctx context.Context, tx pgx.Tx, offers []campaigns.Offer) ([]journey.Change, error) {
	current, err := queryRows[journey.Stored](ctx, tx, `SELECT name, 0 AS version, 0 AS position, definition AS body FROM offers`)
	if err != nil {
		return nil, translate(err, "reading offers")
	}
	next := make([]journey.Stored, len(offers))
	for i, o := range offers {
		o.Codes = nil // the pool lives in coupons
		body, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		next[i] = journey.Stored{Name: o.Name, Body: body}
	}
	edits := map[string]journey.Edit{}
	for _, e := range journey.Diff(current, next) {
		edits[e.Name] = e
	}
	var changes []journey.Change
	keep := []string{}
	for i, o := range offers {
		keep = append(keep, o.Name)
		codes := o.Codes
		if e, ok := edits[o.Name]; ok && (e.Op == journey.Added || e.Op == journey.Changed) {
			if _, err := tx.Exec(ctx, `INSERT INTO offers (name, definition) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = now()`, o.Name, next[i].Body); err != nil {
				return nil, translate(err, "saving offer "+o.Name)
			}
			changes = append(changes, journey.Change{Kind: "offer", Name: o.Name, What: e.Op.String()})
		}
		if len(codes) > 0 {
			tag, err := tx.Exec(ctx, `INSERT INTO coupons (offer, code) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, o.Name, codes)
			if err != nil {
				return nil, translate(err, "loading coupons of "+o.Name)
			}
			if tag.RowsAffected() > 0 {
				changes = append(changes, journey.Change{Kind: "offer", Name: o.Name, What: fmt.Sprintf("%d coupon codes loaded", tag.RowsAffected())})
			}
		}
	}
	tag, err := tx.Exec(ctx, `DELETE FROM offers WHERE NOT (name = ANY($1::text[]))`, keep)
	if err != nil {
		return nil, translate(err, "removing offers")
	}
	if tag.RowsAffected() > 0 {
		changes = append(changes, journey.Change{Kind: "offers", Name: "offers", What: fmt.Sprintf("%d removed", tag.RowsAffected())})
	}
	return changes, nil
}
