package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/stats"
)

// The dashboard's daily rollups.

const statsLock = 0x77656273 // "webs": one rollup refresh at a time

// sqlRefresh recomputes every rollup for the days from $1 (a UTC
// midnight) on; $2 is the start of the window offer conversions are
// recomputed over (30 days after a draw). Each statement reads recent rows
// through an index range (transitions_at, contacts_created, sends_sent_at,
// events_engagement, enrolments_converted, offer_draws_at).
var sqlRefresh = []string{
	`DELETE FROM stats_moves WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_moves (day, from_stage, to_stage, rule, n)
SELECT (at AT TIME ZONE 'UTC')::date, from_stage, to_stage, rule, count(*)
FROM transitions WHERE at >= $1 GROUP BY 1, 2, 3, 4`,

	`DELETE FROM stats_entries WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_entries (day, stage, n)
SELECT day, stage, sum(n) FROM (
    SELECT (at AT TIME ZONE 'UTC')::date AS day, to_stage AS stage, count(*) AS n FROM transitions WHERE at >= $1 GROUP BY 1, 2
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 'awareness', count(*) FROM contacts WHERE created_at >= $1 AND merged_into IS NULL GROUP BY 1
) x GROUP BY 1, 2`,

	`DELETE FROM stats_stays WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_stays (day, stage, bucket, n)
SELECT day, stage, bucket, count(*) FROM (
    SELECT (t.at AT TIME ZONE 'UTC')::date AS day, t.from_stage AS stage,
           floor(2 * ln(1 + greatest(extract(epoch FROM t.at - coalesce(p.at, c.created_at, t.at)) / 3600, 0)) / ln(2))::smallint AS bucket
    FROM transitions t
    LEFT JOIN LATERAL (SELECT p.at FROM transitions p WHERE p.contact_id = t.contact_id AND p.seq < t.seq ORDER BY p.seq DESC LIMIT 1) p ON true
    LEFT JOIN contacts c ON c.id = t.contact_id
    WHERE t.at >= $1
) x GROUP BY 1, 2, 3`,

	`DELETE FROM stats_email WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_email (day, sent, opened, clicked, unsubscribed)
SELECT day, sum(sent), sum(opened), sum(clicked), sum(unsubscribed) FROM (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, count(*) AS sent, 0 AS opened, 0 AS clicked, 0 AS unsubscribed
    FROM sends WHERE status = 'sent' AND sent_at >= $1 GROUP BY 1
    UNION ALL
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, 0,
           count(DISTINCT (contact_id, properties->>'send_id')) FILTER (WHERE name = 'email_opened'),
           count(DISTINCT (contact_id, properties->>'send_id')) FILTER (WHERE name = 'email_clicked'),
           count(*) FILTER (WHERE name = 'unsubscribed')
    FROM events WHERE name IN ('email_opened', 'email_clicked', 'unsubscribed') AND occurred_at >= $1 GROUP BY 1
) x GROUP BY 1`,

	`DELETE FROM stats_steps WHERE day >= $1::timestamptz AT TIME ZONE 'UTC'`,
	`INSERT INTO stats_steps (day, sequence, step, template, tone, sent, opened, clicked, converted)
SELECT day, sequence, step, template, tone, sum(sent), sum(opened), sum(clicked), sum(converted) FROM (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, coalesce(sequence, 'offer: ' || offer, '') AS sequence, step, template,
           coalesce(tone, '') AS tone, count(*) AS sent, 0 AS opened, 0 AS clicked, 0 AS converted
    FROM sends WHERE status = 'sent' AND sent_at >= $1 GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, coalesce(s.sequence, 'offer: ' || s.offer, ''), s.step, s.template, coalesce(s.tone, ''), 0,
           count(DISTINCT s.id) FILTER (WHERE e.name = 'email_opened'),
           count(DISTINCT s.id) FILTER (WHERE e.name = 'email_clicked'), 0
    FROM events e
    JOIN sends s ON s.contact_id = e.contact_id
               AND s.id = ` + sqlEventSend + `
    WHERE e.name IN ('email_opened', 'email_clicked', 'unsubscribed') AND e.occurred_at >= $1
      AND e.name IN ('email_opened', 'email_clicked')
    GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT (en.ended_at AT TIME ZONE 'UTC')::date, en.sequence, l.step, l.template, coalesce(l.tone, ''), 0, 0, 0, count(*)
    FROM enrolments en
    JOIN LATERAL (SELECT s.step, s.template, s.tone FROM sends s
                  WHERE s.contact_id = en.contact_id AND s.enrolment_id = en.id AND s.status = 'sent'
                  ORDER BY s.step DESC LIMIT 1) l ON true
    WHERE en.status = 'converted' AND en.ended_at >= $1
    GROUP BY 1, 2, 3, 4, 5
) x GROUP BY 1, 2, 3, 4, 5`,

	`DELETE FROM stats_offers WHERE day >= $2::timestamptz AT TIME ZONE 'UTC' AND $1::timestamptz IS NOT NULL`,
	`INSERT INTO stats_offers (day, offer, drawn, eligible, converted)
SELECT (d.at AT TIME ZONE 'UTC')::date, d.offer, d.drawn, count(*),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM events e WHERE e.contact_id = d.contact_id AND e.name = 'order_completed'
             AND e.occurred_at > d.at AND e.occurred_at <= d.at + interval '30 days'))
FROM offer_draws d WHERE d.at >= $2 AND $1::timestamptz IS NOT NULL GROUP BY 1, 2, 3`,

	`INSERT INTO stats_state (refreshed_at, stages)
SELECT $3, coalesce(jsonb_object_agg(stage, n), '{}') FROM (
    SELECT stage, count(*) AS n FROM contacts WHERE merged_into IS NULL GROUP BY stage) x
WHERE $1::timestamptz IS NOT NULL AND $2::timestamptz IS NOT NULL
ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at, stages = excluded.stages`,
}

// RefreshStats brings the dashboard's daily rollups up to now: the days
// since the last refresh (and the one before it, for rows committed late)
// are recomputed, offer conversions over the last 31 days; with full, or
// the first time, everything. It reports false if another refresh was
// running (it then does nothing). Rows dated before the recomputed days
// that arrive later (an import of old history, a backtest) are counted
// after a full refresh.
func (s *Store) RefreshStats(ctx context.Context, now time.Time, full bool) (bool, error) {
	ran := false
	err := s.inTx(ctx, "refreshing the dashboard's rollups", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(statsLock)).Scan(&ran); err != nil || !ran {
			return err
		}
		var last *time.Time
		if err := tx.QueryRow(ctx, `SELECT refreshed_at FROM stats_state`).Scan(&last); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		from := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) // everything
		if last != nil && !full {
			from = last.UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
		}
		offersFrom := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -31)
		if from.Before(offersFrom) {
			offersFrom = from
		}
		args := []any{from, offersFrom, now}
		for i, q := range sqlRefresh {
			n := 1
			for strings.Contains(q, fmt.Sprintf("$%d", n+1)) {
				n++
			}
			if _, err := tx.Exec(ctx, q, args[:n]...); err != nil {
				return fmt.Errorf("rollup statement %d: %w", i+1, err)
			}
		}
		return nil
	})
	return ran, err
}

// StatsStateNow returns the last refresh's state; stats.ErrNotRefreshed
// (and ErrNotFound) before the first refresh.
func (s *Store) StatsStateNow(ctx context.Context) (stats.State, error) {
	st, err := queryRow[stats.State](ctx, s.db, `SELECT refreshed_at, stages FROM stats_state`)
	return st, translateAs(err, "reading the rollups' state", stats.ErrNotRefreshed)
}

// Flows returns the moves in the period by pair of stages and rule.
func (s *Store) Flows(ctx context.Context, p stats.Period) ([]stats.Flow, error) {
	out, err := queryRows[stats.Flow](ctx, s.db, `SELECT from_stage, to_stage, rule, sum(n)::bigint AS n FROM stats_moves
		WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`, p.From, p.To)
	return out, translate(err, "reading stage moves")
}

// EmailDays returns the email figures of each day in the period that has
// any.
func (s *Store) EmailDays(ctx context.Context, p stats.Period) ([]stats.EmailDay, error) {
	out, err := queryRows[stats.EmailDay](ctx, s.db, `SELECT day::timestamptz AS day, sent, opened, clicked, unsubscribed FROM stats_email
		WHERE day >= $1::date AND day < $2::date ORDER BY day`, p.From, p.To)
	return out, translate(err, "reading email figures")
}

// stayCount is a number of stays in a stage that ended in a bucket of
// time.
type stayCount struct {
	Stage  string `db:"stage"`
	Bucket int    `db:"bucket"`
	N      int64  `db:"n"`
}

// HealthFigures returns the period's entries, stays and moves.
func (s *Store) HealthFigures(ctx context.Context, p stats.Period) (stats.StageFigures, error) {
	f := stats.StageFigures{Entries: map[string]int64{}, Stays: map[string]map[int]int64{}}
	entries, err := queryRows[stageCount](ctx, s.db, `SELECT stage, sum(n)::bigint AS n FROM stats_entries WHERE day >= $1::date AND day < $2::date GROUP BY 1`, p.From, p.To)
	if err != nil {
		return f, translate(err, "reading stage entries")
	}
	for _, e := range entries {
		f.Entries[e.Stage] = e.N
	}
	stays, err := queryRows[stayCount](ctx, s.db, `SELECT stage, bucket, sum(n)::bigint AS n FROM stats_stays WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2`, p.From, p.To)
	if err != nil {
		return f, translate(err, "reading time in stage")
	}
	for _, st := range stays {
		if f.Stays[st.Stage] == nil {
			f.Stays[st.Stage] = map[int]int64{}
		}
		f.Stays[st.Stage][st.Bucket] = st.N
	}
	f.Moves, err = s.Flows(ctx, p)
	return f, err
}

// StepStats returns the period's figures per sequence, step, template and
// tone.
func (s *Store) StepStats(ctx context.Context, p stats.Period) ([]stats.StepFigures, error) {
	out, err := queryRows[stats.StepFigures](ctx, s.db, `SELECT sequence, step + 1 AS step, template, tone, sum(sent)::bigint AS sent, sum(opened)::bigint AS opened,
		sum(clicked)::bigint AS clicked, sum(converted)::bigint AS converted
		FROM stats_steps WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4, 3`, p.From, p.To)
	return out, translate(err, "reading sequence figures")
}

// OfferStats returns the period's draws per offer, drawn and not drawn.
func (s *Store) OfferStats(ctx context.Context, p stats.Period) ([]stats.OfferFigures, error) {
	out, err := queryRows[stats.OfferFigures](ctx, s.db, `SELECT offer, drawn, sum(eligible)::bigint AS eligible, sum(converted)::bigint AS converted
		FROM stats_offers WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2 ORDER BY 1, 2 DESC`, p.From, p.To)
	return out, translate(err, "reading offer figures")
}
