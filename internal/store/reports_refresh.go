package store

// The reports' rollups (migration 022), kept up to date by
// RefreshReports; reports.go reads them.
//
// A refresh is one transaction (REPEATABLE READ: every statement sees the
// same snapshot, which it records). It takes, in this order:
//
//  1. the outcome events (deliveries, bounces, complaints, human opens and
//     clicks, unsubscribes, each naming its send) and the conversions
//     committed since the last refresh's snapshot — found through the BRIN
//     indexes on ingest_xid, as the activity rollup's fold finds events —
//     and folds them into the emails and draws already counted: an email's
//     outcome flips the first time, its conversions and revenue add up,
//     and report_days (report_holdout_days) gets the difference between
//     the row after and before;
//  2. the emails sent, the offer draws made and the stage moves since the
//     last refresh less a margin (by their time indexes; a row already
//     counted is skipped), each with everything about it visible now:
//     events and conversions of step 1 included, which is why step 1 only
//     touches rows counted before.
//
// So each event and conversion counts exactly once whenever it commits,
// even before its email is counted. A full refresh empties the rollups and
// runs step 2 over all time.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/rule"
)

const reportsLock = 0x7265706f // "repo": one reports refresh at a time

// Margins: how long before the last refresh's time a send, a draw or a
// move is looked for again, for rows stamped before the refresh and
// committed after it (a send's sent_at is taken at the relay's answer, a
// sweep stamps its moves with its start); and never less than since the
// refresh before the last (reportState.since).
const (
	reportSendMargin = 15 * time.Minute
	reportMoveMargin = time.Hour
)

// sqlReportKey is report_days' key.
const sqlReportKey = `day, template, sequence, step, broadcast, broadcast_run, variant, ab_test, tone, stage, offer`

// sqlAddReportDays adds to report_days the figures of the report_emails
// rows in src (a CTE of report_emails columns and sign: 1 for a row as it
// is now, -1 for a row as it was).
const sqlAddReportDays = `
INSERT INTO report_days (` + sqlReportKey + `, sent, delivered, hard_bounced, soft_bounced, complained, opened, clicked,
                         unsubscribed, converted, conversions, revenue, revenue_sq)
SELECT ` + sqlReportKey + `, sum(sign), sum(sign * (delivered_at IS NOT NULL)::int), sum(sign * (bounce = 2)::int),
       sum(sign * (bounce = 1)::int), sum(sign * complained::int), sum(sign * (opened_at IS NOT NULL)::int),
       sum(sign * (clicked_at IS NOT NULL)::int), sum(sign * unsubscribed::int), sum(sign * (conversions > 0)::int),
       sum(sign * conversions), sum(sign * revenue), sum(sign * revenue * revenue)
FROM src GROUP BY ` + sqlReportKey + `
ON CONFLICT (` + sqlReportKey + `) DO UPDATE SET sent = report_days.sent + excluded.sent,
    delivered = report_days.delivered + excluded.delivered, hard_bounced = report_days.hard_bounced + excluded.hard_bounced,
    soft_bounced = report_days.soft_bounced + excluded.soft_bounced, complained = report_days.complained + excluded.complained,
    opened = report_days.opened + excluded.opened, clicked = report_days.clicked + excluded.clicked,
    unsubscribed = report_days.unsubscribed + excluded.unsubscribed, converted = report_days.converted + excluded.converted,
    conversions = report_days.conversions + excluded.conversions, revenue = report_days.revenue + excluded.revenue,
    revenue_sq = report_days.revenue_sq + excluded.revenue_sq`

// sqlAddHoldoutDays adds to report_holdout_days the report_draws rows in
// src (with sign, as sqlAddReportDays).
const sqlAddHoldoutDays = `
INSERT INTO report_holdout_days (day, offer, drawn, eligible, converted, revenue, revenue_sq)
SELECT (at AT TIME ZONE 'UTC')::date, offer, drawn, sum(sign), sum(sign * (conversions > 0)::int), sum(sign * revenue),
       sum(sign * revenue * revenue)
FROM src GROUP BY 1, 2, 3
ON CONFLICT (day, offer, drawn) DO UPDATE SET eligible = report_holdout_days.eligible + excluded.eligible,
    converted = report_holdout_days.converted + excluded.converted, revenue = report_holdout_days.revenue + excluded.revenue,
    revenue_sq = report_holdout_days.revenue_sq + excluded.revenue_sq`

// sqlOutcomeEvents are the events that say what became of an email: made
// by Waymark (tracking links, relays' reports), naming the send.
const sqlOutcomeEvents = `e.kind = 'internal' AND e.name IN ('email_delivered', 'email_bounced', 'email_complained', 'email_opened', 'email_clicked', 'unsubscribed')`

// sqlOutcomes aggregates outcome events e into an email's outcomes.
const sqlOutcomes = `min(e.occurred_at) FILTER (WHERE e.name = 'email_delivered') AS delivered_at,
       coalesce(max(CASE WHEN e.name = 'email_bounced' THEN CASE WHEN e.properties->>'type' = 'hard' THEN 2 ELSE 1 END END), 0)::smallint AS bounce,
       coalesce(bool_or(e.name = 'email_complained'), false) AS complained,
       min(e.occurred_at) FILTER (WHERE e.name = 'email_opened' AND NOT ` + sqlMachineFlag + `) AS opened_at,
       min(e.occurred_at) FILTER (WHERE e.name = 'email_clicked' AND NOT ` + sqlMachineFlag + `) AS clicked_at,
       coalesce(bool_or(e.name = 'unsubscribed'), false) AS unsubscribed`

// sqlEventSend is the send an event e names (NULL when none).
const sqlEventSend = `CASE WHEN e.properties->>'send_id' ~ '^[0-9]{1,18}$' THEN (e.properties->>'send_id')::bigint END`

// sqlNewConversions selects the conversions v committed since snapshot $1
// (whose xmin is $2).
const sqlNewConversions = `v.ingest_xid >= $2::bigint AND NOT pg_visible_in_snapshot(v.ingest_xid::text::xid8, $1::pg_snapshot)`

// sqlFoldEvents folds the outcome events committed since snapshot $1 into
// the emails counted.
const sqlFoldEvents = `
WITH x AS (
    SELECT ` + sqlEventSend + ` AS send_id, ` + sqlOutcomes + `
    FROM events e WHERE ` + sqlNewEvents + ` AND ` + sqlOutcomeEvents + ` GROUP BY 1
), old AS (
    SELECT r.*, -1 AS sign FROM report_emails r JOIN x ON x.send_id = r.send_id
), upd AS (
    UPDATE report_emails r SET delivered_at = least(r.delivered_at, x.delivered_at), bounce = greatest(r.bounce, x.bounce),
        complained = r.complained OR x.complained, opened_at = least(r.opened_at, x.opened_at),
        clicked_at = least(r.clicked_at, x.clicked_at), unsubscribed = r.unsubscribed OR x.unsubscribed
    FROM x WHERE r.send_id = x.send_id
    RETURNING r.*, 1 AS sign
), src AS (SELECT * FROM old UNION ALL SELECT * FROM upd)` + sqlAddReportDays

// sqlFoldConversions adds the conversions committed since snapshot $1 to
// the emails counted that they are credited to.
const sqlFoldConversions = `
WITH x AS (
    SELECT v.send_id, count(*) AS n, sum(v.value) AS revenue
    FROM conversions v WHERE ` + sqlNewConversions + ` AND v.send_id IS NOT NULL GROUP BY 1
), old AS (
    SELECT r.*, -1 AS sign FROM report_emails r JOIN x ON x.send_id = r.send_id
), upd AS (
    UPDATE report_emails r SET conversions = r.conversions + x.n, revenue = r.revenue + x.revenue
    FROM x WHERE r.send_id = x.send_id
    RETURNING r.*, 1 AS sign
), src AS (SELECT * FROM old UNION ALL SELECT * FROM upd)` + sqlAddReportDays

// sqlFoldDraws adds the conversions committed since snapshot $1 to the
// draws counted of their contacts within the horizon ($3) before them.
const sqlFoldDraws = `
WITH x AS (
    SELECT d.contact_id, d.offer, d.at, count(*) AS n, sum(v.value) AS revenue
    FROM conversions v JOIN report_draws d ON d.contact_id = v.contact_id AND v.occurred_at > d.at AND v.occurred_at <= d.at + $3::interval
    WHERE ` + sqlNewConversions + ` GROUP BY 1, 2, 3
), old AS (
    SELECT d.*, -1 AS sign FROM report_draws d JOIN x USING (contact_id, offer, at)
), upd AS (
    UPDATE report_draws d SET conversions = d.conversions + x.n, revenue = d.revenue + x.revenue
    FROM x WHERE d.contact_id = x.contact_id AND d.offer = x.offer AND d.at = x.at
    RETURNING d.*, 1 AS sign
), src AS (SELECT * FROM old UNION ALL SELECT * FROM upd)` + sqlAddHoldoutDays

// sqlAddConversionDays counts conversions v (of sqlFoldConversionDays's
// condition) per day, stage and credit.
const sqlAddConversionDays = `
INSERT INTO report_conversion_days (day, stage, credited, conversions, revenue)
SELECT (v.occurred_at AT TIME ZONE 'UTC')::date, v.stage, v.send_id IS NOT NULL, count(*), sum(v.value)
FROM conversions v WHERE %s GROUP BY 1, 2, 3
ON CONFLICT (day, stage, credited) DO UPDATE SET conversions = report_conversion_days.conversions + excluded.conversions,
    revenue = report_conversion_days.revenue + excluded.revenue`

// sqlNewEmails counts the emails sent since $1 not counted yet, with
// their outcomes so far (%s: how they are joined, per email or, for a
// full refresh, aggregated over every event).
const sqlNewEmails = `
WITH src AS (
    INSERT INTO report_emails (send_id, day, sent_at, contact_id, template, sequence, step, broadcast, broadcast_run, variant,
                               ab_test, tone, offer, stage, delivered_at, bounce, complained, opened_at, clicked_at,
                               unsubscribed, conversions, revenue)
    SELECT s.id, (s.sent_at AT TIME ZONE 'UTC')::date, s.sent_at, s.contact_id, s.template, coalesce(s.sequence, 'offer: ' || s.offer, ''),
           s.step, coalesce(s.broadcast, ''), coalesce(s.broadcast_run, -1), coalesce(s.variant, -1), coalesce(s.ab_test, false),
           coalesce(s.tone, ''), coalesce(s.offer, ''),
           coalesce((SELECT t.to_stage FROM transitions t WHERE t.contact_id = s.contact_id AND t.at <= s.sent_at ORDER BY t.at DESC, t.seq DESC LIMIT 1),
                    (SELECT t.from_stage FROM transitions t WHERE t.contact_id = s.contact_id AND t.at > s.sent_at ORDER BY t.at, t.seq LIMIT 1),
                    c.stage, 'awareness'),
           o.delivered_at, coalesce(o.bounce, 0), coalesce(o.complained, false), o.opened_at, o.clicked_at,
           coalesce(o.unsubscribed, false), coalesce(v.n, 0), coalesce(v.revenue, 0)
    FROM sends s
    LEFT JOIN contacts c ON c.id = s.contact_id
    %s
    WHERE s.status = 'sent' AND s.sent_at >= $1 AND NOT EXISTS (SELECT 1 FROM report_emails r WHERE r.send_id = s.id)
    ON CONFLICT (send_id) DO NOTHING
    RETURNING report_emails.*, 1 AS sign
)` + sqlAddReportDays

// How sqlNewEmails finds an email's outcomes: a few new emails look up
// their own events (their contact's, by events_contact_name; and the
// contact it was merged into) and conversions (conversions_send); a full
// refresh aggregates them all once.
const (
	sqlEmailOutcomesEach = `
    LEFT JOIN LATERAL (SELECT ` + sqlOutcomes + ` FROM events e
        WHERE e.contact_id IN (s.contact_id, c.merged_into) AND ` + sqlOutcomeEvents + ` AND e.properties->>'send_id' = s.id::text) o ON true
    LEFT JOIN LATERAL (SELECT count(*) AS n, sum(v.value) AS revenue FROM conversions v WHERE v.send_id = s.id) v ON true`
	sqlEmailOutcomesAll = `
    LEFT JOIN (SELECT ` + sqlEventSend + ` AS send_id, ` + sqlOutcomes + ` FROM events e WHERE ` + sqlOutcomeEvents + ` GROUP BY 1) o ON o.send_id = s.id
    LEFT JOIN (SELECT v.send_id, count(*) AS n, sum(v.value) AS revenue FROM conversions v WHERE v.send_id IS NOT NULL GROUP BY 1) v ON v.send_id = s.id`
)

// sqlNewDraws counts the offer draws made since $1 not counted yet, with
// their contact's conversions within the horizon ($2) after them.
const sqlNewDraws = `
WITH src AS (
    INSERT INTO report_draws (contact_id, offer, at, drawn, conversions, revenue)
    SELECT d.contact_id, d.offer, d.at, d.drawn, v.n, coalesce(v.revenue, 0)
    FROM offer_draws d
    CROSS JOIN LATERAL (SELECT count(*) AS n, sum(v.value) AS revenue FROM conversions v
        WHERE v.contact_id = d.contact_id AND v.occurred_at > d.at AND v.occurred_at <= d.at + $2::interval) v
    WHERE d.at >= $1 AND NOT EXISTS (SELECT 1 FROM report_draws r WHERE r.contact_id = d.contact_id AND r.offer = d.offer AND r.at = d.at)
    ON CONFLICT DO NOTHING
    RETURNING report_draws.*, 1 AS sign
)` + sqlAddHoldoutDays

// sqlNewMoves records the stage moves made since $1 not recorded yet,
// each with the stay it ended (since the contact's move before, or its
// creation), and counts them per day and stage; $2 lists the stages in
// journey order.
const sqlNewMoves = `
WITH ins AS (
    INSERT INTO report_moves (contact_id, seq, day, from_stage, to_stage, forward, stay, bucket)
    SELECT t.contact_id, t.seq, (t.at AT TIME ZONE 'UTC')::date, t.from_stage, t.to_stage,
           coalesce(array_position($2::text[], t.to_stage) > array_position($2::text[], t.from_stage), false), x.stay,
           floor(8 * log(2, 1 + extract(epoch FROM x.stay)))::smallint
    FROM transitions t
    LEFT JOIN LATERAL (SELECT p.at FROM transitions p WHERE p.contact_id = t.contact_id AND p.seq < t.seq ORDER BY p.seq DESC LIMIT 1) p ON true
    LEFT JOIN contacts c ON c.id = t.contact_id
    CROSS JOIN LATERAL (SELECT greatest(t.at - coalesce(p.at, c.created_at, t.at), interval '0') AS stay) x
    WHERE t.at >= $1 AND NOT EXISTS (SELECT 1 FROM report_moves m WHERE m.contact_id = t.contact_id AND m.seq = t.seq)
    ON CONFLICT DO NOTHING
    RETURNING day, from_stage, to_stage, forward, bucket
), stays AS (
    INSERT INTO report_stays (day, stage, bucket, n)
    SELECT day, from_stage, bucket, count(*) FROM ins WHERE forward GROUP BY 1, 2, 3
    ON CONFLICT (day, stage, bucket) DO UPDATE SET n = report_stays.n + excluded.n
)
INSERT INTO report_stage_days (day, stage, entered, moved_on, regressed)
SELECT day, stage, sum(entered), sum(moved_on), sum(regressed) FROM (
    SELECT day, to_stage AS stage, 1 AS entered, 0 AS moved_on, 0 AS regressed FROM ins
    UNION ALL
    SELECT day, from_stage, 0, forward::int, (NOT forward)::int FROM ins
) x GROUP BY 1, 2
ON CONFLICT (day, stage) DO UPDATE SET entered = report_stage_days.entered + excluded.entered,
    moved_on = report_stage_days.moved_on + excluded.moved_on, regressed = report_stage_days.regressed + excluded.regressed`

// reportState is report_state's row.
type reportState struct {
	Snapshot    string     `db:"snapshot"`
	RefreshedAt *time.Time `db:"refreshed_at"`
	PreviousAt  *time.Time `db:"previous_at"`
}

// since is when the sends, draws or moves an incremental refresh after st
// looks for are stamped from: margin before the last refresh, or the
// refresh before it if that is earlier.
func (st reportState) since(margin time.Duration) time.Time {
	from := st.RefreshedAt.UTC().Add(-margin)
	if st.PreviousAt != nil && st.PreviousAt.Before(from) {
		from = st.PreviousAt.UTC()
	}
	return from
}

// RefreshReports brings the reports' rollups up to now (see the top of
// this file); with full, or the first time, it rebuilds them from the
// tables. Refreshes run one at a time (a second waits for the first, then
// takes what is left). It does not attribute conversions: the application
// runs attribution before it.
func (s *Store) RefreshReports(ctx context.Context, now time.Time, full bool) error {
	_, nested := s.db.(pgx.Tx)
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			if !nested {
				if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(reportsLock)); err != nil {
				return err
			}
			// A refresh that committed after this transaction's snapshot
			// changed the row: this one fails to serialise and retries.
			st, err := queryRow[reportState](ctx, tx, `SELECT snapshot, refreshed_at, previous_at FROM report_state FOR UPDATE`)
			if err != nil {
				return err
			}
			if full || st.Snapshot == "" || st.RefreshedAt == nil {
				err = rebuildReports(ctx, tx)
			} else {
				err = refreshReports(ctx, tx, st)
			}
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE report_state SET snapshot = pg_current_snapshot()::text, refreshed_at = $1,
				previous_at = CASE WHEN $2 THEN NULL ELSE refreshed_at END`, now, full || st.Snapshot == "")
			return err
		})
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return translate(err, "refreshing the reports' rollups")
}

// stageNames are the stages in journey order.
func stageNames() []string {
	out := make([]string, len(rule.Stages))
	for i, st := range rule.Stages {
		out[i] = string(st)
	}
	return out
}

// refreshReports adds what happened since st to the rollups.
func refreshReports(ctx context.Context, tx pgx.Tx, st reportState) error {
	steps, err := refreshSteps(st)
	if err != nil {
		return err
	}
	// The new events and conversions are found through the BRIN indexes on
	// ingest_xid, the new rows through their time indexes: the planner,
	// whose statistics lag behind, must not scan the tables instead; nor
	// compile the few rows a refresh usually takes with JIT.
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL jit = off`); err != nil {
		return err
	}
	return runReportSteps(ctx, tx, steps)
}

// refreshSteps are the statements of an incremental refresh after st.
func refreshSteps(st reportState) ([]reportStep, error) {
	snap := st.Snapshot
	xmin, _, ok := strings.Cut(snap, ":")
	if !ok || st.RefreshedAt == nil {
		return nil, fmt.Errorf("reports: bad state %q", snap)
	}
	horizon := report.HoldoutHorizon
	return []reportStep{
		{"folding outcome events", sqlFoldEvents, []any{snap, xmin}},
		{"folding conversions into emails", sqlFoldConversions, []any{snap, xmin}},
		{"folding conversions into offer draws", sqlFoldDraws, []any{snap, xmin, horizon}},
		{"counting conversions per day", fmt.Sprintf(sqlAddConversionDays, sqlNewConversions), []any{snap, xmin}},
		{"counting new emails", fmt.Sprintf(sqlNewEmails, sqlEmailOutcomesEach), []any{st.since(reportSendMargin)}},
		{"counting new offer draws", sqlNewDraws, []any{st.since(reportMoveMargin), horizon}},
		{"recording new stage moves", sqlNewMoves, []any{st.since(reportMoveMargin), stageNames()}},
	}, nil
}

// rebuildReports empties the rollups and counts everything.
func rebuildReports(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '256MB';
TRUNCATE report_emails, report_days, report_draws, report_holdout_days, report_moves, report_stays, report_stage_days, report_conversion_days`); err != nil {
		return err
	}
	always := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	horizon := report.HoldoutHorizon
	return runReportSteps(ctx, tx, []reportStep{
		{"counting conversions per day", fmt.Sprintf(sqlAddConversionDays, "true"), nil},
		{"counting emails", fmt.Sprintf(sqlNewEmails, sqlEmailOutcomesAll), []any{always}},
		{"counting offer draws", sqlNewDraws, []any{always, horizon}},
		{"recording stage moves", sqlNewMoves, []any{always, stageNames()}},
		// The planner's statistics, for the reads and the next refresh.
		{"analysing the rollups", `ANALYZE report_emails, report_days, report_draws, report_holdout_days, report_moves,
report_stays, report_stage_days, report_conversion_days`, nil},
	})
}

// reportStep is one statement of a refresh: what it does, its SQL and
// arguments.
type reportStep struct {
	what string
	sql  string
	args []any
}

func runReportSteps(ctx context.Context, tx pgx.Tx, steps []reportStep) error {
	for _, step := range steps {
		if _, err := tx.Exec(ctx, step.sql, step.args...); err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
	}
	return nil
}
