package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/rule"
)

// Enrolments: contacts in sequences, enrolled by the rules of
// campaigns.Eligibility, ended by goals, exits and journey changes.

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
	// whole tables (see sqlSeqScanOff), and the statement is not compiled
	// (sqlProbesOnly: it queues the webhooks of the enrolments).
	err := s.inTx(ctx, "enrolling contacts", func(db pgx.Tx) error {
		out = out[:0]
		if _, err := db.Exec(ctx, sqlProbesOnly); err != nil {
			return err
		}
		enrolled, err := queryRows[enrolmentRow](ctx, db, sqlEnrol, el.ids, el.seqs, vers, el.ats, el.since, el.cooldowns, el.perStay, el.ever, el.perO, fSeqs, fTmpls, fAfter)
		for _, r := range enrolled {
			e := r.enrolment()
			e.FirstAfter = first[e.Sequence].after
			out = append(out, e)
		}
		return err
	})
	return out, err
}

// enrolmentRow is an enrolment as sqlEnrol and ActiveEnrolments read it.
type enrolmentRow struct {
	ID         int64     `db:"id"`
	ContactID  int64     `db:"contact_id"`
	Sequence   string    `db:"sequence"`
	Version    int       `db:"version"`
	EnrolledAt time.Time `db:"enrolled_at"`
}

func (r enrolmentRow) enrolment() campaigns.Enrolment {
	return campaigns.Enrolment{ID: r.ID, ContactID: r.ContactID, Sequence: r.Sequence, Version: r.Version, EnrolledAt: r.EnrolledAt}
}

// enrolmentAggs is an enrolment's aggregates (aggregatesSQL).
type enrolmentAggs struct {
	ID   int64      `db:"id"`
	Aggs []*float64 `db:"aggs"`
}

// ActiveEnrolments implements campaigns.Store.
func (s *Store) ActiveEnrolments(ctx context.Context, contactIDs []int64) ([]campaigns.Enrolment, error) {
	active, err := queryRows[enrolmentRow](ctx, s.db, `SELECT id, contact_id, sequence, version, enrolled_at FROM enrolments
		WHERE contact_id = ANY($1::bigint[]) AND status = 'active'`, contactIDs)
	if err != nil {
		return nil, translate(err, "loading enrolments")
	}
	var out []campaigns.Enrolment
	for _, r := range active {
		out = append(out, r.enrolment())
	}
	return out, nil
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
	aggs, err := queryRows[enrolmentAggs](ctx, s.db, `SELECT en.id, (SELECT `+agg+` FROM events e
		WHERE e.contact_id = en.contact_id AND e.name = ANY($2::text[]) AND e.occurred_at <= $1) AS aggs
		FROM unnest($3::bigint[], `+param(contacts)+`::bigint[], `+param(starts)+`::timestamptz[]) AS en(id, contact_id, enrolled_at)`, args...)
	for _, a := range aggs {
		out[a.ID] = values(needs, kinds, a.Aggs, asOf)
	}
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
