package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/rule"
)

// Definitions implements campaigns.Store.
func (s *Store) Definitions(ctx context.Context) (campaigns.Definitions, error) {
	var d campaigns.Definitions
	rows, err := s.db.Query(ctx, `SELECT name FROM paused_sequences ORDER BY name`)
	if err != nil {
		return d, translate(err, "loading paused sequences")
	}
	if d.Paused, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return d, translate(err, "loading paused sequences")
	}
	// A paused sequence enrols nobody: the runner does not see it.
	rows, err = s.db.Query(ctx, `SELECT version, definition FROM sequences WHERE name NOT IN (SELECT name FROM paused_sequences) ORDER BY position`)
	if err != nil {
		return d, translate(err, "loading sequences")
	}
	var (
		v    int
		body []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &body}, func() error {
		var seq campaigns.Sequence
		if err := json.Unmarshal(body, &seq); err != nil {
			return err
		}
		seq.Version = v
		d.Sequences = append(d.Sequences, seq)
		return nil
	})
	if err != nil {
		return d, translate(err, "loading sequences")
	}
	rows, err = s.db.Query(ctx, `SELECT name, condition FROM holds ORDER BY position`)
	if err != nil {
		return d, translate(err, "loading holds")
	}
	if d.Holds, err = pgx.CollectRows(rows, pgx.RowToStructByPos[campaigns.Hold]); err != nil {
		return d, translate(err, "loading holds")
	}
	rows, err = s.db.Query(ctx, `SELECT definition FROM offers ORDER BY name`)
	if err != nil {
		return d, translate(err, "loading offers")
	}
	_, err = pgx.ForEachRow(rows, []any{&body}, func() error {
		var o campaigns.Offer
		if err := json.Unmarshal(body, &o); err != nil {
			return err
		}
		d.Offers = append(d.Offers, o)
		return nil
	})
	if err != nil {
		return d, translate(err, "loading offers")
	}
	d.Settings = campaigns.DefaultSettings()
	err = s.db.QueryRow(ctx, `SELECT definition FROM settings`).Scan(&body)
	if err == nil {
		err = json.Unmarshal(body, &d.Settings)
	}
	if err != nil && err != pgx.ErrNoRows {
		return d, translate(err, "loading settings")
	}
	return d, nil
}

// SequenceVersion implements campaigns.Store.
func (s *Store) SequenceVersion(ctx context.Context, name string, version int) (campaigns.Sequence, error) {
	var (
		seq  campaigns.Sequence
		body []byte
	)
	if err := s.db.QueryRow(ctx, `SELECT definition FROM sequence_versions WHERE name = $1 AND version = $2`, name, version).Scan(&body); err != nil {
		return seq, translate(err, fmt.Sprintf("loading sequence %s version %d", name, version))
	}
	if err := json.Unmarshal(body, &seq); err != nil {
		return seq, err
	}
	seq.Version = version
	return seq, nil
}

// SequenceVersions implements campaigns' DependencyStore: every version of
// every sequence ever stored (enrolments continue on the version they
// entered), so that what old versions' goals and exits read is known.
func (s *Store) SequenceVersions(ctx context.Context) ([]campaigns.VersionRef, error) {
	rows, err := s.db.Query(ctx, `SELECT name, version FROM sequence_versions ORDER BY name, version`)
	if err != nil {
		return nil, translate(err, "listing sequence versions")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[campaigns.VersionRef])
	return out, translate(err, "listing sequence versions")
}

// sqlEligible is whether candidate c (contact_id, sequence, at, since,
// cooldown, once_per_stay, once_ever, once_per_occurrence: its
// campaigns.Eligibility) may be enrolled now: the contact is subscribed
// and not merged away, and none of its enrolments in the sequence keeps it
// out (an active one, one started within the cooldown, and as the
// candidate's rules say: one started during this stay in the stage, any
// one, or one running when the candidate's event occurred or started
// since). Each probed by key. sqlEnrol enrols by it; the dry run
// (sqlEnrollable) counts by it.
const sqlEligible = `(SELECT k.merged_into IS NULL AND k.status = 'subscribed' FROM contacts k WHERE k.id = c.contact_id)
      AND NOT (SELECT EXISTS (
        SELECT 1 FROM enrolments e
        WHERE e.contact_id = c.contact_id AND e.sequence = c.sequence
          AND (e.status = 'active'
               OR e.enrolled_at > c.at - c.cooldown
               OR (c.once_per_stay AND e.enrolled_at >= c.since)
               OR c.once_ever
               OR (c.once_per_occurrence AND coalesce(e.ended_at, 'infinity') >= c.at))))`

// sqlEnrol enrols the allowed candidates ($1-$9, one row each) and queues
// their first step ($10-$12, one row a sequence), in one statement.
//
// Its cost is linear in the candidates whatever the planner believes
// about them: the arrays' sizes are unknown to a generic plan, and a
// table's statistics lag behind a first import. So each candidate's rows
// are found by key, in a subquery run for that candidate (a join could
// scan the whole table once per candidate, or hash it for a handful);
// and two lists derived from the arrays are never joined with each other
// (planned as ten rows each, a nested loop of the enrolments with their
// candidates removed 99,990,000 rows for 10,000 of them). The first
// step is looked up in the list of sequences, a handful of rows.
//
// Enrolments are inserted in (contact, sequence) order: two passes
// enrolling the same contacts at once (the reactor and the sweep) then
// wait for each other's enrolment of a contact instead of deadlocking
// over two of them taken in opposite orders.
const sqlEnrol = `
WITH c AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::interval[], $7::bool[], $8::bool[], $9::bool[])
        AS c(contact_id, sequence, version, at, since, cooldown, once_per_stay, once_ever, once_per_occurrence)
), ok AS (
    SELECT c.* FROM c WHERE ` + sqlEligible + `
), ins AS (
    INSERT INTO enrolments (contact_id, sequence, version, enrolled_at)
    SELECT contact_id, sequence, version, at FROM ok ORDER BY contact_id, sequence
    ON CONFLICT DO NOTHING
    RETURNING contact_id, id, sequence, version, enrolled_at
), first AS (
    SELECT * FROM unnest($10::text[], $11::text[], $12::interval[]) AS f(sequence, template, after)
), q AS (
    INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at)
    SELECT ins.contact_id, ins.id, ins.sequence, 0, f.template, ins.enrolled_at + f.after
    FROM ins JOIN first f ON f.sequence = ins.sequence
), hooks AS (
    -- Webhooks out: an enrolled delivery for each endpoint that wants one.
    INSERT INTO webhook_outbox (endpoint, type, body, due_at)
    SELECT w.name, 'enrolled', jsonb_build_object('type', 'enrolled', 'timestamp', ins.enrolled_at, 'data', jsonb_build_object(
            'contact_id', ins.contact_id, 'enrolment_id', ins.id, 'sequence', ins.sequence, 'version', ins.version, 'enrolled_at', ins.enrolled_at)), ins.enrolled_at
    FROM webhook_endpoints w JOIN ins ON true
    WHERE 'enrolled' = ANY(w.events) AND w.disabled_at IS NULL
)
SELECT contact_id, id, sequence, version, enrolled_at FROM ins`

// eligibility is the candidates' campaigns.Eligibility as the arrays of
// sqlEligible's columns.
type eligibility struct {
	ids                 []int64
	seqs                []string
	ats, since          []time.Time
	cooldowns           []time.Duration
	perStay, ever, perO []bool
}

func newEligibility(cands []campaigns.Enrolment) eligibility {
	n := len(cands)
	el := eligibility{
		ids: make([]int64, n), seqs: make([]string, n), ats: make([]time.Time, n), since: make([]time.Time, n),
		cooldowns: make([]time.Duration, n), perStay: make([]bool, n), ever: make([]bool, n), perO: make([]bool, n),
	}
	for i, c := range cands {
		r := c.Eligibility()
		el.ids[i], el.seqs[i], el.ats[i], el.since[i] = c.ContactID, c.Sequence, c.EnrolledAt, c.StageSince
		el.cooldowns[i], el.perStay[i], el.ever[i], el.perO[i] = r.Cooldown, r.OncePerStay, r.OnceEver, r.OncePerOccurrence
	}
	return el
}

// Enrol implements campaigns.Store: the candidates their
// campaigns.Eligibility allows are enrolled and their first step queued,
// in one statement.
func (s *Store) Enrol(ctx context.Context, cands []campaigns.Enrolment) ([]campaigns.Enrolment, error) {
	el := newEligibility(cands)
	vers := make([]int32, len(cands))
	// The first step of each sequence: the same for all its candidates.
	type firstStep struct {
		template string
		after    time.Duration
	}
	first := map[string]firstStep{}
	var (
		fSeqs  []string
		fTmpls []string
		fAfter []time.Duration
	)
	for i, c := range cands {
		vers[i] = int32(c.Version)
		if f, ok := first[c.Sequence]; ok {
			if f != (firstStep{c.FirstTmpl, c.FirstAfter}) {
				return nil, fmt.Errorf("enrolling contacts: candidates of sequence %s disagree on its first step", c.Sequence)
			}
			continue
		}
		first[c.Sequence] = firstStep{c.FirstTmpl, c.FirstAfter}
		fSeqs, fTmpls, fAfter = append(fSeqs, c.Sequence), append(fTmpls, c.FirstTmpl), append(fAfter, c.FirstAfter)
	}
	var out []campaigns.Enrolment
	// The candidates' rows are probed by key, never found by scanning
	// whole tables (see sqlSeqScanOff).
	err := s.inTx(ctx, "enrolling contacts", func(db pgx.Tx) error {
		out = out[:0]
		if _, err := db.Exec(ctx, sqlSeqScanOff); err != nil {
			return err
		}
		rows, err := db.Query(ctx, sqlEnrol, el.ids, el.seqs, vers, el.ats, el.since, el.cooldowns, el.perStay, el.ever, el.perO, fSeqs, fTmpls, fAfter)
		if err != nil {
			return err
		}
		var e campaigns.Enrolment
		_, err = pgx.ForEachRow(rows, []any{&e.ContactID, &e.ID, &e.Sequence, &e.Version, &e.EnrolledAt}, func() error {
			e.FirstAfter = first[e.Sequence].after
			out = append(out, e)
			return nil
		})
		return err
	})
	return out, err
}

// ActiveEnrolments implements campaigns.Store.
func (s *Store) ActiveEnrolments(ctx context.Context, contactIDs []int64) ([]campaigns.Enrolment, error) {
	rows, err := s.db.Query(ctx, `SELECT id, contact_id, sequence, version, enrolled_at FROM enrolments
		WHERE contact_id = ANY($1::bigint[]) AND status = 'active'`, contactIDs)
	if err != nil {
		return nil, translate(err, "loading enrolments")
	}
	var (
		out []campaigns.Enrolment
		e   campaigns.Enrolment
	)
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.ContactID, &e.Sequence, &e.Version, &e.EnrolledAt}, func() error {
		out = append(out, e)
		return nil
	})
	return out, translate(err, "loading enrolments")
}

// EnrolmentValues implements campaigns.Store.
func (s *Store) EnrolmentValues(ctx context.Context, es []campaigns.Enrolment, needs []rule.Aggregate, asOf time.Time) (map[int64]map[rule.Aggregate]float64, error) {
	out := make(map[int64]map[rule.Aggregate]float64, len(es))
	if len(es) == 0 {
		return out, nil
	}
	args := []any{asOf, nil, nil}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	agg, names, kinds := aggregatesSQL(needs, param, "$1::timestamptz", "en.enrolled_at")
	args[1] = names
	// The enrolments as the caller has them (id, contact, start): looked
	// up by id alone, they were found by a scan of the whole table, there
	// being no index on the id without the contact (322 ms for a batch
	// of 1,000 among 21,000 enrolments).
	ids, contacts, starts := make([]int64, len(es)), make([]int64, len(es)), make([]time.Time, len(es))
	for i, e := range es {
		ids[i], contacts[i], starts[i] = e.ID, e.ContactID, e.EnrolledAt
	}
	args[2] = ids
	rows, err := s.db.Query(ctx, `SELECT en.id, (SELECT `+agg+` FROM events e
		WHERE e.contact_id = en.contact_id AND e.name = ANY($2::text[]) AND e.occurred_at <= $1)
		FROM unnest($3::bigint[], `+param(contacts)+`::bigint[], `+param(starts)+`::timestamptz[]) AS en(id, contact_id, enrolled_at)`, args...)
	if err != nil {
		return nil, translate(err, "loading enrolment facts")
	}
	var (
		id   int64
		aggs []*float64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &aggs}, func() error {
		out[id] = values(needs, kinds, aggs, asOf)
		aggs = nil
		return nil
	})
	return out, translate(err, "loading enrolment facts")
}

// sqlEndEnrolments ends enrolments ($1 ids, $2 contacts, $3 statuses, $4
// reasons, $5 times) that are still active, locking them in key order, and
// cancels their queued sends with the reason. The runner (EndEnrolments)
// and the sender (a finished step that reaches the goal) both use it.
//
// The update takes each enrolment's new status from the row that locked
// it: joined to the list again instead, the generic plan (which expects
// ten rows in the list and one locked) read the whole list for every
// enrolment, O(n²): 174 ms for 1,000 enrolments, 12.5 ms without.
const sqlEndEnrolments = `
WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) AS v(id, contact_id, status, reason, at)),
locked AS (
    SELECT e.contact_id, e.id, v.status, v.reason, v.at FROM enrolments e JOIN v ON e.contact_id = v.contact_id AND e.id = v.id
    WHERE e.status = 'active' ORDER BY e.contact_id, e.id FOR UPDATE OF e),
ended AS (
    UPDATE enrolments e SET status = l.status, reason = l.reason, ended_at = l.at
    FROM locked l
    WHERE e.contact_id = l.contact_id AND e.id = l.id AND e.status = 'active'
    RETURNING e.contact_id, e.id, l.reason, l.status)
UPDATE sends s SET status = 'cancelled', delayed_reason = ended.status || ': ' || ended.reason, updated_at = now()
FROM ended WHERE s.contact_id = ended.contact_id AND s.enrolment_id = ended.id AND s.status = 'queued'`

// EndEnrolments implements campaigns.Store: the enrolments end with their
// status and reason, and their queued sends are cancelled with it.
func (s *Store) EndEnrolments(ctx context.Context, endings []campaigns.Ending) error {
	n := len(endings)
	ids := make([]int64, n)
	contacts := make([]int64, n)
	statuses := make([]string, n)
	reasons := make([]string, n)
	ats := make([]time.Time, n)
	for i, e := range endings {
		ids[i], contacts[i], statuses[i], reasons[i], ats[i] = e.Enrolment.ID, e.Enrolment.ContactID, e.Status, e.Reason, e.At
	}
	// Locks are taken in the sender's order — the sends first, then the
	// enrolments, each in key order — so that ending enrolments while
	// their sends are recorded, or two passes ending the same ones, wait
	// for each other instead of deadlocking; a conflict left is retried.
	return s.inTx(ctx, "ending enrolments", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlSeqScanOff); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS v(id, contact_id))
SELECT 1 FROM sends s JOIN v ON s.contact_id = v.contact_id AND s.enrolment_id = v.id
WHERE s.status = 'queued' ORDER BY s.contact_id, s.id FOR UPDATE OF s`, ids, contacts); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sqlEndEnrolments, ids, contacts, statuses, reasons, ats)
		return err
	})
}

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
