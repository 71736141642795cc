package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
)

const sqlClaimDue = `
WITH claimed AS (
    -- The rows are locked by the sub-select, so their ctids hold until
    -- the update: a TID scan, where a join on the key made the planner
    -- hash the whole table.
    UPDATE sends s SET claimed_by = $1, claimed_at = now()
    WHERE s.ctid = ANY(ARRAY(
        SELECT ctid FROM sends
        WHERE status = 'queued' AND due_at <= $2 AND claimed_by IS NULL
          AND ($5::int <= 1 OR contact_id % $5::int = $6::int)
        ORDER BY due_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED))
    RETURNING s.*
)
SELECT c.id, c.contact_id, coalesce(c.enrolment_id, 0) AS enrolment_id, coalesce(c.sequence, '') AS sequence, c.step,
       coalesce(c.offer, '') AS offer, coalesce(c.offer_code, '') AS offer_code, coalesce(c.offer_expires, 'epoch') AS offer_expires,
       c.template, c.due_at, c.attempts, coalesce(c.held_since, c.due_at) AS held_since,
       coalesce(k.email, '') AS email, k.status = 'subscribed' AS subscribed, coalesce(sp.reason, '') AS suppressed,
       coalesce(e.status = 'active', false) AS enrolment_active, coalesce(e.version, 0) AS enrolment_version,
       coalesce(e.enrolled_at, 'epoch') AS enrolled_at,
       CASE WHEN $4::interval > interval '0' THEN
           coalesce((SELECT array_agg(x.sent_at ORDER BY x.sent_at) FROM sends x
                     WHERE x.contact_id = c.contact_id AND x.status = 'sent' AND x.sent_at > $2::timestamptz - $4::interval), '{}')
       ELSE '{}' END AS sent_in_window,
       -- One address, one email: another contact with this address whose
       -- send of the same step (or broadcast run) is sent or on the wire,
       -- or still queued and first by contact id (every sender picks the
       -- same one).
       coalesce(CASE WHEN (c.enrolment_id IS NOT NULL OR c.broadcast_run IS NOT NULL) AND k.email IS NOT NULL THEN
           (SELECT o.contact_id FROM contacts k2 JOIN sends o ON o.contact_id = k2.id
            WHERE k2.email = k.email AND k2.id <> k.id AND k2.merged_into IS NULL
              AND (CASE WHEN c.broadcast_run IS NOT NULL THEN o.broadcast_run = c.broadcast_run
                        ELSE o.enrolment_id IS NOT NULL AND o.sequence = c.sequence AND o.step = c.step END)
              AND (o.status IN ('sending', 'sent') OR (o.status = 'queued' AND k2.id < k.id))
            ORDER BY k2.id LIMIT 1) END, 0) AS duplicate_of,
       -- A broadcast's: its run, variant, the variant's subject line and
       -- the broadcast's state now (see campaigns.BroadcastDue).
       coalesce(c.broadcast, '') AS broadcast, coalesce(c.broadcast_run, 0) AS broadcast_run, coalesce(c.variant, 0)::int AS variant,
       coalesce(CASE WHEN c.broadcast_run IS NOT NULL THEN
           (SELECT r.definition #>> ARRAY['Test', 'Variants', c.variant::text, 'Subject'] FROM broadcast_runs r WHERE r.id = c.broadcast_run) END, '') AS subject,
       coalesce(CASE WHEN c.broadcast IS NOT NULL THEN (SELECT b.state FROM broadcasts b WHERE b.name = c.broadcast) END, '') AS broadcast_state
FROM claimed c
JOIN contacts k ON k.id = c.contact_id
LEFT JOIN LATERAL (SELECT reason FROM suppressions sp
    -- = ANY: one index scan for both keys (an OR made two bitmap scans)
    WHERE sp.email = ANY(ARRAY[k.email, 'sha256:' || encode(sha256(convert_to(k.email, 'UTF8')), 'hex')]) LIMIT 1) sp ON true
LEFT JOIN enrolments e ON e.contact_id = c.contact_id AND e.id = c.enrolment_id
ORDER BY c.due_at, c.id`

// ClaimDue implements campaigns.SendStore: due sends are claimed with FOR
// UPDATE SKIP LOCKED, so each is claimed by one sender, with their context.
//
// The due sends are read in due order from the sends_due index, as many as
// the batch needs: with the table's statistics behind a tick that queued
// thousands (a first tick), the planner instead fetched every due send by
// bitmap and sorted them all for each batch — O(queue) a claim, 52 of 73
// ms for 1,000 of 95,000 due sends (3.8 ms read in order).
//
// The setting and the claim go in one pipelined batch, one implicit
// transaction committed by the server: a claim in an explicit transaction
// left its rows locked but not yet claimed while its sender waited to send
// the COMMIT (a sender stopped there held 1,000 sends that no other could
// take or count).
func (s *Store) ClaimDue(ctx context.Context, holder string, limit int, now time.Time, capWindow time.Duration, part, parts int) ([]campaigns.Due, error) {
	var out []campaigns.Due
	err := s.batch(ctx, "claiming due sends", func(b *pgx.Batch) []func(pgx.BatchResults) error {
		b.Queue(`SELECT set_config('enable_bitmapscan', 'off', true)`)
		b.Queue(sqlClaimDue, holder, now, limit, capWindow, parts, part)
		return []func(pgx.BatchResults) error{execRead, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err == nil {
				out, err = scanDue(rows)
			}
			return err
		}}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanDue reads the claimed sends with their context. By position, into
// one campaigns.Due reused for every row: the claim is the sender's hot
// path, and scanning its twenty columns by name into a struct
// (pgx.RowToStructByName) cost 13.3 → 15.7 µs a send claimed in batches of
// 1,000 (BenchmarkClaimDue, three alternating runs each, load ~1.5). The
// SELECT names its columns (as Due names its fields) all the same.
func scanDue(rows pgx.Rows) ([]campaigns.Due, error) {
	var (
		out []campaigns.Due
		d   campaigns.Due
	)
	_, err := pgx.ForEachRow(rows, []any{&d.ID, &d.ContactID, &d.EnrolmentID, &d.Sequence, &d.Step, &d.Offer, &d.OfferCode,
		&d.OfferExpires, &d.Template, &d.DueAt, &d.Attempts, &d.HeldSince,
		&d.Email, &d.Subscribed, &d.Suppressed,
		&d.EnrolmentActive, &d.EnrolmentVersion, &d.EnrolledAt, &d.SentInWindow, &d.DuplicateOf,
		&d.Broadcast, &d.BroadcastRun, &d.Variant, &d.Subject, &d.BroadcastState}, func() error {
		out = append(out, d)
		d.SentInWindow = nil
		return nil
	})
	return out, err
}

// Record implements campaigns.SendStore: the ends of messages (final
// states, retries) and the marks of the messages about to be handed to
// SMTP, in one round trip and one transaction (a pipelined batch runs as
// one implicit transaction: all of it or nothing).
func (s *Store) Record(ctx context.Context, holder string, marks []*campaigns.Due, fs []campaigns.Final, ds []campaigns.Delay) ([]bool, error) {
	var marked []bool
	err := s.batch(ctx, "recording sends", func(b *pgx.Batch) []func(pgx.BatchResults) error {
		marked = make([]bool, len(marks))
		// A group holds a few records when there are few connections,
		// and PostgreSQL then plans each statement anew for its small
		// arrays (a custom plan looks cheaper than the cached one): that
		// planning was 42% of PostgreSQL's CPU at 8 connections. The
		// cached generic plans are the ones large groups use anyway.
		b.Queue(sqlGenericPlansBatch)
		reads := append([]func(pgx.BatchResults) error{execRead}, queueFinish(b, fs)...)
		reads = append(reads, queueDelay(b, ds)...)
		if len(marks) == 0 {
			return reads
		}
		cids, ids := make([]int64, len(marks)), make([]int64, len(marks))
		at := make(map[[2]int64]int, len(marks))
		for i, d := range marks {
			cids[i], ids[i] = d.ContactID, d.ID
			at[[2]int64{d.ContactID, d.ID}] = i
		}
		// 'sending' is the durable record that the message is on the
		// wire: only a send still queued and claimed by holder.
		b.Queue(`UPDATE sends s SET status = 'sending', attempts = s.attempts + 1, claimed_at = now(), updated_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS v(contact_id, id)
WHERE s.contact_id = v.contact_id AND s.id = v.id AND s.claimed_by = $3 AND s.status = 'queued'
RETURNING s.contact_id, s.id`, cids, ids, holder)
		return append(reads, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			sending, err := pgx.CollectRows(rows, pgx.RowToStructByName[sendKey])
			for _, k := range sending {
				if i, ok := at[[2]int64{k.ContactID, k.ID}]; ok {
					marked[i] = true
				}
			}
			return err
		})
	})
	return marked, err
}

// sendKey is a send's primary key.
type sendKey struct {
	ContactID int64 `db:"contact_id"`
	ID        int64 `db:"id"`
}

// MarkSending records that one message is on the wire (Record does it
// for many at once).
func (s *Store) MarkSending(ctx context.Context, d *campaigns.Due, holder string) (bool, error) {
	m, err := s.Record(ctx, holder, []*campaigns.Due{d}, nil, nil)
	if err != nil {
		return false, err
	}
	return m[0], nil
}

// batch sends the statements queue queues as one pipelined batch (one
// round trip, one implicit transaction) and reads their results, retrying
// transient conflicts a few times.
func (s *Store) batch(ctx context.Context, doing string, queue func(b *pgx.Batch) []func(pgx.BatchResults) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		b := &pgx.Batch{}
		reads := queue(b)
		if b.Len() == 0 {
			return nil
		}
		br := s.db.SendBatch(ctx, b)
		for _, read := range reads {
			if err = read(br); err != nil {
				break
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err == nil || !retryable(err) {
			break
		}
	}
	return translate(err, doing)
}

func execRead(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// Finish implements campaigns.SendStore: final states, the next steps of
// enrolments, ended enrolments and hard-bounce suppressions, in one
// transaction.
func (s *Store) Finish(ctx context.Context, fs []campaigns.Final) error {
	return s.batch(ctx, "recording sends", func(b *pgx.Batch) []func(pgx.BatchResults) error {
		return queueFinish(b, fs)
	})
}

// sqlFinish records the ends of sends ($1 contacts, $2 ids, $3 statuses
// and the rest of each end), and in the same statement, from the rows it
// updated, the webhooks out the ends report: email_sent for a send sent,
// email_bounced for a hard bounce at SMTP time ($11) — for each endpoint
// that wants them (nothing when none does: no event is built in Go).
const sqlFinish = `
WITH done AS (
    UPDATE sends s SET status = v.status,
        smtp_response = CASE WHEN v.status IN ('sent', 'failed', 'unknown') THEN v.detail ELSE s.smtp_response END,
        delayed_reason = CASE WHEN v.status IN ('sent', 'failed', 'unknown') THEN NULL ELSE v.detail END,
        recipient = nullif(v.recipient, ''), message_id = nullif(v.mid, ''), tone = nullif(v.tone, ''), tone_reason = nullif(v.reason, ''),
        template_version = nullif(v.version, 0),
        sent_at = CASE WHEN v.status = 'sent' THEN v.at END, claimed_by = NULL, updated_at = now()
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::timestamptz[], $11::bool[])
        AS v(contact_id, id, status, detail, recipient, mid, tone, reason, version, at, bounced)
    WHERE s.contact_id = v.contact_id AND s.id = v.id
    RETURNING s.contact_id, s.id, s.sequence, s.step, s.offer, s.template, s.broadcast, s.variant,
        v.status, v.detail, v.recipient, v.mid, v.tone, v.at, v.bounced
), hooks AS (
    INSERT INTO webhook_outbox (endpoint, type, body, due_at)
    SELECT e.name, x.type, jsonb_build_object('type', x.type, 'timestamp', d.at, 'data',
            jsonb_build_object('contact_id', d.contact_id, 'send_id', d.id, 'sequence', coalesce(d.sequence, ''), 'step', d.step,
                'offer', coalesce(d.offer, ''), 'template', d.template, 'recipient', d.recipient, 'message_id', d.mid, 'at', d.at)
            || CASE WHEN x.type = 'email_sent' THEN jsonb_build_object('tone', d.tone)
                    ELSE jsonb_build_object('type', 'hard', 'detail', d.detail) END
            || CASE WHEN d.broadcast IS NOT NULL THEN jsonb_build_object('broadcast', d.broadcast, 'variant', d.variant + 1) ELSE '{}' END), d.at
    FROM webhook_endpoints e
    JOIN done d ON true
    CROSS JOIN LATERAL (SELECT CASE WHEN d.status = 'sent' THEN 'email_sent' WHEN d.bounced THEN 'email_bounced' END AS type) x
    WHERE x.type = ANY(e.events) AND e.disabled_at IS NULL
)
SELECT count(*) FROM done`

// queueFinish queues what Finish writes; it returns the readers of the
// statements' results.
func queueFinish(b *pgx.Batch, fs []campaigns.Final) []func(pgx.BatchResults) error {
	if len(fs) == 0 {
		return nil
	}
	n := len(fs)
	var (
		cids, ids                              = make([]int64, n), make([]int64, n)
		statuses, details, recips, mids, tones = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		reasons                                = make([]string, n)
		versions                               = make([]int32, n)
		ats                                    = make([]time.Time, n)
		nextC, nextE                           []int64
		nextSeq, nextTmpl                      []string
		nextStep                               []int32
		nextDue                                []time.Time
		endIDs, endC                           []int64
		endStatus, endReason                   []string
		endAt                                  []time.Time
		suppress                               []string
		bounced                                = make([]bool, n)
	)
	for i, f := range fs {
		cids[i], ids[i], statuses[i], details[i], recips[i], mids[i], tones[i], reasons[i], versions[i], ats[i] =
			f.Due.ContactID, f.Due.ID, f.Status, f.Detail, f.Recipient, f.MessageID, f.Tone, f.ToneReason, int32(f.TemplateVersion), f.At
		if f.Next != nil {
			nextC, nextE, nextSeq, nextTmpl = append(nextC, f.Due.ContactID), append(nextE, f.Due.EnrolmentID), append(nextSeq, f.Due.Sequence), append(nextTmpl, f.Next.Template)
			nextStep, nextDue = append(nextStep, int32(f.Next.Step)), append(nextDue, f.Next.DueAt)
		}
		if e := f.End; e != nil {
			endIDs, endC = append(endIDs, e.Enrolment.ID), append(endC, e.Enrolment.ContactID)
			endStatus, endReason, endAt = append(endStatus, e.Status), append(endReason, e.Reason), append(endAt, e.At)
		}
		if f.Suppress != "" {
			suppress = append(suppress, f.Suppress)
			bounced[i] = true
		}
	}
	reads := []func(pgx.BatchResults) error{execRead}
	b.Queue(sqlFinish, cids, ids, statuses, details, recips, mids, tones, reasons, versions, ats, bounced)
	if len(nextC) > 0 {
		reads = append(reads, execRead)
		b.Queue(`
INSERT INTO sends (contact_id, enrolment_id, sequence, step, template, due_at)
SELECT v.contact_id, v.enrolment_id, v.sequence, v.step, v.template, v.due_at
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::text[], $6::timestamptz[]) AS v(contact_id, enrolment_id, sequence, step, template, due_at)
JOIN enrolments e ON e.contact_id = v.contact_id AND e.id = v.enrolment_id AND e.status = 'active'
ON CONFLICT DO NOTHING`, nextC, nextE, nextSeq, nextStep, nextTmpl, nextDue)
	}
	if len(suppress) > 0 {
		reads = append(reads, execRead)
		b.Queue(`INSERT INTO suppressions (email, reason, detail) SELECT unnest($1::text[]), 'hard_bounce', 'permanent failure on the recipient' ON CONFLICT DO NOTHING`, suppress)
	}
	if len(endIDs) > 0 {
		// The enrolment ends, its queued sends are cancelled with the
		// reason: the statement EndEnrolments runs.
		reads = append(reads, execRead)
		b.Queue(sqlEndEnrolments, endIDs, endC, endStatus, endReason, endAt)
	}
	return reads
}

// Delay implements campaigns.SendStore: the sends wait until the given
// time with the reason, and their claims are released.
func (s *Store) Delay(ctx context.Context, ds []campaigns.Delay) error {
	return s.batch(ctx, "delaying sends", func(b *pgx.Batch) []func(pgx.BatchResults) error {
		return queueDelay(b, ds)
	})
}

func queueDelay(b *pgx.Batch, ds []campaigns.Delay) []func(pgx.BatchResults) error {
	if len(ds) == 0 {
		return nil
	}
	n := len(ds)
	cids, ids := make([]int64, n), make([]int64, n)
	untils := make([]time.Time, n)
	reasons := make([]string, n)
	retry, held := make([]bool, n), make([]bool, n)
	for i, d := range ds {
		cids[i], ids[i], untils[i], reasons[i], retry[i], held[i] = d.Due.ContactID, d.Due.ID, d.Until, d.Reason, d.Retry, d.Held
	}
	b.Queue(`
UPDATE sends s SET status = 'queued', due_at = v.until, delayed_reason = v.reason, claimed_by = NULL, updated_at = now(),
    smtp_response = CASE WHEN v.retry THEN v.reason ELSE s.smtp_response END,
    held_since = CASE WHEN v.held THEN coalesce(s.held_since, s.due_at) END
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::bool[], $6::bool[]) AS v(contact_id, id, until, reason, retry, held)
WHERE s.contact_id = v.contact_id AND s.id = v.id AND s.status IN ('queued', 'sending')`, cids, ids, untils, reasons, retry, held)
	return []func(pgx.BatchResults) error{execRead}
}
