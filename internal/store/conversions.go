package store

// Conversions (issue 21, migration 021): the goal event of the journey's
// conversion: section, each credited once to the email the contact last
// opened or clicked as a person within the goal's window before it.
//
// Attribution runs over the events committed since its last pass, as the
// activity rollup's fold does (rollup.go): attribution_state holds the
// snapshot of the last pass; a pass, in a REPEATABLE READ transaction
// that locked that table before its snapshot, takes the goal events
// visible now and not in the snapshot; '' (before the first pass, or after an apply changed the
// goal's event or value) takes every stored goal event. conversions'
// key (contact_id, message_id) credits an event once however often it
// is seen; a merge stores an anonymous contact's events again under the
// identified contact, so an event already credited under a contact
// merged into its own is not credited again.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/report"
)

// goalRow is conversion_goal's row.
type goalRow struct {
	Event    string `db:"event"`
	Value    string `db:"value"`
	WindowUS int64  `db:"window_us"`
}

func (g goalRow) goal() report.Goal {
	return report.Goal{Event: g.Event, Value: g.Value, Window: time.Duration(g.WindowUS) * time.Microsecond}
}

const sqlGoal = `SELECT event, value, (extract(epoch FROM "window") * 1000000)::bigint AS window_us FROM conversion_goal`

// ConversionGoal returns the stored conversion goal.
func (s *Store) ConversionGoal(ctx context.Context) (report.Goal, error) {
	g, err := queryRow[goalRow](ctx, s.db, sqlGoal)
	return g.goal(), translate(err, "reading the conversion goal")
}

// applyConversion stores the journey's conversion goal. A new event or
// value forgets attribution's snapshot, so that the next pass attributes
// the new goal's events already stored (conversions already credited
// stay); a new window applies to the events attributed from now on.
func applyConversion(ctx context.Context, tx pgx.Tx, g report.Goal) ([]journey.Change, error) {
	if g == (report.Goal{}) {
		g = report.DefaultGoal() // a journey built in code, not parsed
	}
	old, err := queryRow[goalRow](ctx, tx, sqlGoal+` FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading the conversion goal")
	}
	if old.goal() == g {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE conversion_goal SET event = $1, value = $2, "window" = $3::interval, updated_at = now()`, g.Event, g.Value, g.Window); err != nil {
		return nil, translate(err, "saving the conversion goal")
	}
	what := "changed: " + journey.DescribeGoal(g) + " (was " + journey.DescribeGoal(old.goal()) + ")"
	if old.Event != g.Event || old.Value != g.Value {
		if _, err := tx.Exec(ctx, `UPDATE attribution_state SET snapshot = ''`); err != nil {
			return nil, translate(err, "resetting attribution")
		}
		what += "; the next attribution pass credits the " + g.Event + " events already stored"
	}
	return []journey.Change{{Kind: "conversion goal", Name: g.Event, What: what}}, nil
}

// AttributeConversions credits the goal events committed since the last
// pass (every stored one after the goal changed) and queues a conversion
// webhook for each, in one transaction; it returns how many it credited.
// now is when they are recorded as attributed.
func (s *Store) AttributeConversions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.inRepeatableRead(ctx, func(tx pgx.Tx) error {
		n = 0
		// Passes take turns, and an apply that changes the goal (it
		// resets the snapshot) with them: the lock is taken before the
		// transaction's snapshot (LOCK takes none), so a pass that waited
		// reads what the one before it wrote instead of failing to
		// serialise with it.
		if _, err := tx.Exec(ctx, `LOCK TABLE attribution_state IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var snap string
		if err := tx.QueryRow(ctx, `SELECT snapshot FROM attribution_state`).Scan(&snap); err != nil {
			return err
		}
		g, err := queryRow[goalRow](ctx, tx, sqlGoal)
		if err != nil {
			return err
		}
		args := []any{}
		param := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
		newEvents := "true"
		if snap != "" {
			xmin, _, ok := strings.Cut(snap, ":")
			if !ok {
				return fmt.Errorf("attribution: bad snapshot %q", snap)
			}
			// As the fold: the BRIN index on ingest_xid finds the new
			// events; no seq scan, no JIT for the few a pass usually takes.
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL jit = off`); err != nil {
				return err
			}
			param(snap) // $1 and $2 of sqlNewEvents
			param(xmin)
			newEvents = sqlNewEvents
		}
		if err := tx.QueryRow(ctx, attributeSQL(g.goal(), newEvents, param, now), args...).Scan(&n); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE attribution_state SET snapshot = pg_current_snapshot()::text, attributed_at = $1`, now)
		return err
	})
	return n, translate(err, "attributing conversions")
}

// attributeSQL is the pass's one statement: for each new goal event (e
// in newEvents), the email credited — among the contact's human opens
// and clicks (not flagged machine) of an existing send of the contact or
// of a contact merged into it, in (the event's time - window, its time]:
// the latest; at one instant a click before an open, then the higher
// send — its stage then and its value; the conversions it inserts, the
// conversion webhooks it queues, and how many it inserted. Every lookup
// is by contact: the events', sends', transitions' and conversions'
// primary keys (contact_id first; events_contact_name_time, which the
// brief of issue 21 names, was dropped by migrations 010 and 012), a
// conversion moved by a merge by conversions_at; only an open of an email
// not sent to its contact reads the contacts merged into others (there
// is no index on merged_into), once a pass.
func attributeSQL(g report.Goal, newEvents string, param func(any) string, now time.Time) string {
	value := "0"
	if g.Value != "" {
		value = "coalesce(" + numeric("ev.properties->"+param(g.Value)) + ", 0)"
	}
	win := journey.FormatDuration(g.Window)
	secs := "floor(extract(epoch FROM p.occurred_at - p.touch_at))::bigint"
	return `
WITH merged AS MATERIALIZED (
    -- Contacts merged into others, read (once) only by a pass that meets
    -- an open or click of an email not sent to the contact it is on.
    SELECT k.id, k.merged_into FROM contacts k WHERE k.merged_into IS NOT NULL
), ev AS (
    SELECT e.contact_id, e.message_id, e.name, e.occurred_at, e.properties
    FROM events e
    WHERE e.name = ` + param(g.Event) + ` AND ` + newEvents + `
      -- Not credited already: under its contact, or under a contact merged
      -- into it before a merge moved it (found by its time).
      AND NOT EXISTS (SELECT 1 FROM conversions x WHERE x.contact_id = e.contact_id AND x.message_id = (e.message_id COLLATE "default"))
      AND NOT EXISTS (SELECT 1 FROM conversions x JOIN contacts k ON k.id = x.contact_id
                      WHERE x.occurred_at = e.occurred_at AND x.message_id = (e.message_id COLLATE "default") AND k.merged_into = e.contact_id)
), pick AS (
    SELECT ev.contact_id, ev.message_id, ev.name, ev.occurred_at, (` + value + `)::numeric AS value,
           coalesce(
               (SELECT t.to_stage FROM (` + sqlMovesOf + `) t WHERE t.at <= ev.occurred_at ORDER BY t.at DESC, t.seq DESC LIMIT 1),
               (SELECT t.from_stage FROM (` + sqlMovesOf + `) t WHERE t.at > ev.occurred_at ORDER BY t.at, t.seq LIMIT 1),
               (SELECT c.stage FROM contacts c WHERE c.id = ev.contact_id), 'awareness') AS stage,
           w.emails, w.send_contact, w.send_id, w.touch, w.touch_at
    FROM ev
    CROSS JOIN LATERAL (
        SELECT count(DISTINCT o.send_id) AS emails,
               (array_agg(o.send_contact ORDER BY o.at DESC, o.clicked DESC, o.send_id DESC))[1] AS send_contact,
               (array_agg(o.send_id ORDER BY o.at DESC, o.clicked DESC, o.send_id DESC))[1] AS send_id,
               (array_agg(CASE WHEN o.clicked THEN 'clicked' ELSE 'opened' END ORDER BY o.at DESC, o.clicked DESC, o.send_id DESC))[1] AS touch,
               max(o.at) AS touch_at
        FROM (SELECT s.contact_id AS send_contact, s.id AS send_id, e.occurred_at AS at, e.name = 'email_clicked' AS clicked
              FROM (` + sqlEventsOf + `) e
              CROSS JOIN LATERAL (SELECT ` + sqlEventSend + ` AS id) n
              -- The send, of the contact or (rarely) of one merged into it.
              CROSS JOIN LATERAL (
                  SELECT s.contact_id, s.id FROM sends s WHERE s.contact_id = ev.contact_id AND s.id = n.id
                  UNION ALL
                  SELECT s.contact_id, s.id FROM merged k JOIN sends s ON s.contact_id = k.id AND s.id = n.id WHERE k.merged_into = ev.contact_id
                  LIMIT 1) s
              -- Opens and clicks Waymark's links recorded (kind internal),
              -- not events a client sent under those names.
              WHERE e.name IN ('email_opened', 'email_clicked') AND e.kind = 'internal' AND NOT ` + sqlMachineFlag + ` AND n.id IS NOT NULL
                AND e.occurred_at > ev.occurred_at - ` + param(g.Window) + `::interval AND e.occurred_at <= ev.occurred_at) o
    ) w
), full_ AS (
    SELECT p.*, s.template, s.sequence, CASE WHEN s.sequence IS NOT NULL THEN s.step END AS step, s.offer, s.broadcast,
           CASE WHEN s.broadcast IS NOT NULL THEN coalesce(s.variant, 0) + 1 END AS variant,
           CASE WHEN p.send_id IS NULL THEN ` + param("no email opened or clicked as a person within "+win+" before it: not credited to an email") + `
                ELSE 'credited to ' || s.template || ' (' ||
                     CASE WHEN s.broadcast IS NOT NULL THEN 'broadcast ' || s.broadcast ||
                              CASE WHEN r.decide_at IS NOT NULL THEN ', variant ' || (coalesce(s.variant, 0) + 1) ELSE '' END
                          WHEN s.sequence IS NOT NULL THEN 'sequence ' || s.sequence || ', step ' || (s.step + 1) ||
                              CASE WHEN s.offer IS NOT NULL THEN ', offer ' || s.offer ELSE '' END
                          WHEN s.offer IS NOT NULL THEN 'offer ' || s.offer
                          ELSE 'email ' || s.id END || '): ' || p.touch ||
                     CASE WHEN a.d = 0 THEN ' at the same moment' ELSE ' ' || ` + sqlAgo("a.d") + ` || ' before' END || ', ' ||
                     CASE WHEN p.emails = 1 THEN 'the only email' ELSE 'the last of ' || p.emails || ' emails' END ||
                     ' this contact opened or clicked as a person within ' || ` + param(win) + `
           END AS reason
    FROM pick p
    LEFT JOIN sends s ON s.contact_id = p.send_contact AND s.id = p.send_id
    LEFT JOIN broadcast_runs r ON r.id = s.broadcast_run
    CROSS JOIN LATERAL (SELECT ` + secs + ` AS d) a
), ins AS (
    INSERT INTO conversions (contact_id, message_id, event, occurred_at, value, stage, send_id, touch, touch_at, reason, attributed_at)
    SELECT contact_id, message_id, name, occurred_at, value, stage, send_id, touch, touch_at, reason, ` + param(now) + `::timestamptz FROM full_
    ON CONFLICT (contact_id, message_id) DO NOTHING
    RETURNING contact_id, message_id
), hooks AS (
    -- Webhooks out: a conversion delivery for each endpoint that wants
    -- one, in the pass's own statement (nothing when none does).
    INSERT INTO webhook_outbox (endpoint, type, body, due_at)
    SELECT e.name, 'conversion', jsonb_build_object('type', 'conversion', 'timestamp', f.occurred_at, 'data', jsonb_build_object(
            'contact_id', f.contact_id, 'event', f.name, 'message_id', f.message_id, 'value', f.value, 'stage', f.stage,
            'send_id', f.send_id, 'template', f.template, 'sequence', f.sequence, 'step', f.step, 'offer', f.offer, 'broadcast', f.broadcast,
            'variant', f.variant, 'touch', f.touch, 'touch_at', f.touch_at, 'at', f.occurred_at)), ` + param(now) + `::timestamptz
    FROM webhook_endpoints e
    JOIN ins i ON true
    JOIN full_ f ON f.contact_id = i.contact_id AND f.message_id = i.message_id
    WHERE 'conversion' = ANY(e.events) AND e.disabled_at IS NULL
)
SELECT count(*) FROM ins`
}

// sqlEventsOf and sqlMovesOf are the events and the stage moves of the
// goal event's contact, read by contact (the primary keys; OFFSET 0 keeps
// the planner from combining them with an index on time, which reads
// every contact's events of the window).
const (
	sqlEventsOf = `SELECT o.* FROM events o WHERE o.contact_id = ev.contact_id OFFSET 0`
	sqlMovesOf  = `SELECT t.* FROM transitions t WHERE t.contact_id = ev.contact_id OFFSET 0`
)

// sqlAgo writes d seconds as a person reads a time ago: 42s, 12m, 3h 12m,
// 2d 5h.
func sqlAgo(d string) string {
	return `CASE WHEN ` + d + ` < 60 THEN ` + d + ` || 's'
                 WHEN ` + d + ` < 3600 THEN ` + d + ` / 60 || 'm'
                 WHEN ` + d + ` < 86400 THEN ` + d + ` / 3600 || 'h' || CASE WHEN ` + d + ` % 3600 >= 60 THEN ' ' || ` + d + ` % 3600 / 60 || 'm' ELSE '' END
                 ELSE ` + d + ` / 86400 || 'd' || CASE WHEN ` + d + ` % 86400 >= 3600 THEN ' ' || ` + d + ` % 86400 / 3600 || 'h' ELSE '' END END`
}

// Conversions implements report.Reader: a contact's conversions (a merge
// moves them with the events), newest first, with the email each was
// credited to.
func (s *Store) Conversions(ctx context.Context, contactID int64) ([]report.Conversion, error) {
	out, err := queryRows[report.Conversion](ctx, s.db, `
SELECT x.contact_id, x.message_id, x.event, x.occurred_at, x.value::float8 AS value, x.stage, coalesce(x.send_id, 0) AS send_id,
       coalesce(x.touch, '') AS touch, coalesce(x.touch_at, '0001-01-01T00:00:00Z') AS touch_at, x.reason,
       coalesce(s.template, '') AS template, coalesce(s.sequence, '') AS sequence, coalesce(s.broadcast, '') AS broadcast, x.attributed_at
FROM conversions x
LEFT JOIN LATERAL (
    SELECT s.template, s.sequence, s.broadcast FROM sends s WHERE s.contact_id = x.contact_id AND s.id = x.send_id
    UNION ALL
    SELECT s.template, s.sequence, s.broadcast FROM contacts k JOIN sends s ON s.contact_id = k.id AND s.id = x.send_id
    WHERE k.merged_into = x.contact_id
    LIMIT 1) s ON true
WHERE x.contact_id = $1
ORDER BY x.occurred_at DESC, x.message_id`, contactID)
	return out, translate(err, "reading a contact's conversions")
}
