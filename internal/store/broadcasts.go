package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
)

// broadcastRow is a row of broadcasts, read by name.
type broadcastRow struct {
	Name        string     `db:"name"`
	Source      string     `db:"source"`
	Definition  []byte     `db:"definition"`
	State       string     `db:"state"`
	StateReason *string    `db:"state_reason"`
	ScheduledAt *time.Time `db:"scheduled_at"`
	LastRun     *time.Time `db:"last_run"`
}

func (r broadcastRow) broadcast() (campaigns.StoredBroadcast, error) {
	var b campaigns.StoredBroadcast
	if err := json.Unmarshal(r.Definition, &b.Broadcast); err != nil {
		return b, fmt.Errorf("broadcast %s: %w", r.Name, err)
	}
	b.Name, b.Source, b.State = r.Name, r.Source, r.State
	if r.StateReason != nil {
		b.StateReason = *r.StateReason
	}
	if r.ScheduledAt != nil {
		b.ScheduledAt = *r.ScheduledAt
	}
	if r.LastRun != nil {
		b.LastRun = *r.LastRun
	}
	return b, nil
}

const sqlBroadcastRows = `SELECT b.name, b.source, b.definition, b.state, b.state_reason, b.scheduled_at,
       (SELECT max(r.scheduled_for) FROM broadcast_runs r WHERE r.broadcast = b.name) AS last_run
FROM broadcasts b`

func broadcasts(ctx context.Context, db DB, where string, args ...any) ([]campaigns.StoredBroadcast, error) {
	return collectAs(ctx, db, sqlBroadcastRows+" "+where, args, broadcastRow.broadcast)
}

// collectAs reads the rows of sql by name as R and turns each into a T.
func collectAs[R, T any](ctx context.Context, db DB, sql string, args []any, as func(R) (T, error)) ([]T, error) {
	raw, err := queryRows[R](ctx, db, sql, args...)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(raw))
	for i, r := range raw {
		if out[i], err = as(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Broadcasts lists every broadcast: the journey's in its order, then those
// created through the API by name.
func (s *Store) Broadcasts(ctx context.Context) ([]campaigns.StoredBroadcast, error) {
	out, err := broadcasts(ctx, s.db, `ORDER BY b.source = 'api', b.position, b.name`)
	return out, translate(err, "listing broadcasts")
}

// Broadcast returns the broadcast called name; ErrNotFound when there is
// none.
func (s *Store) Broadcast(ctx context.Context, name string) (campaigns.StoredBroadcast, error) {
	out, err := broadcasts(ctx, s.db, `WHERE b.name = $1`, name)
	if err == nil && len(out) == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return campaigns.StoredBroadcast{}, translateAs(err, "reading broadcast "+name, campaigns.ErrNoBroadcast)
	}
	return out[0], nil
}

// initialState is a broadcast's state when it is (re)defined: scheduled
// if it has a time to run at, else a draft.
func initialState(b campaigns.Broadcast) string {
	if b.SendAt != "" || b.Schedule != "" {
		return campaigns.StateScheduled
	}
	return campaigns.StateDraft
}

// applyBroadcasts stores a journey's broadcasts. A new one is scheduled
// when it has a time (a draft otherwise); a changed one keeps its state
// (paused stays paused, cancelled stays cancelled), and a new time
// re-anchors its schedule. A broadcast created through the API with the
// same name becomes the journey's. Those the journey no longer has are
// cancelled (their queued sends with them) and kept, with their runs.
func applyBroadcasts(ctx context.Context, tx pgx.Tx, bs []campaigns.Broadcast) ([]journey.Change, error) {
	current := map[string]campaigns.StoredBroadcast{}
	cur, err := broadcasts(ctx, tx, `FOR UPDATE OF b`)
	if err != nil {
		return nil, translate(err, "reading broadcasts")
	}
	for _, b := range cur {
		current[b.Name] = b
	}
	var changes []journey.Change
	keep := map[string]bool{}
	for pos, b := range bs {
		keep[b.Name] = true
		body, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		old, exists := current[b.Name]
		oldBody, _ := json.Marshal(old.Broadcast)
		revived := exists && old.State == campaigns.StateCancelled && old.StateReason == removedReason
		if exists && old.Source == "journey" && journey.SameJSON(oldBody, body) && !revived {
			if _, err := tx.Exec(ctx, `UPDATE broadcasts SET position = $2 WHERE name = $1 AND position <> $2`, b.Name, pos); err != nil {
				return nil, translate(err, "reordering broadcast "+b.Name)
			}
			continue
		}
		state := initialState(b)
		if exists && !revived && (old.State == campaigns.StatePaused || old.State == campaigns.StateCancelled) {
			state = old.State
		}
		// A new time (or none before) is anchored again by the next
		// scheduled pass.
		reanchor := !exists || old.SendAt != b.SendAt || old.Schedule != b.Schedule || revived
		if _, err := tx.Exec(ctx, `INSERT INTO broadcasts (name, source, position, definition, state)
			VALUES ($1, 'journey', $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET source = 'journey', position = excluded.position, definition = excluded.definition,
			    state = excluded.state, state_reason = CASE WHEN excluded.state = broadcasts.state THEN broadcasts.state_reason END,
			    scheduled_at = CASE WHEN $5 THEN NULL ELSE broadcasts.scheduled_at END, updated_at = now()`,
			b.Name, pos, body, state, reanchor); err != nil {
			return nil, translate(err, "saving broadcast "+b.Name)
		}
		what := "added"
		switch {
		case revived:
			what = "added again"
		case exists && old.Source == "api":
			what = "changed (it was created through the API; the journey manages it now)"
		case exists:
			what = "changed"
		}
		if exists && b.Throttle != old.Throttle {
			if _, err := respread(ctx, tx, b.Name, b.Throttle, time.Time{}, respreadThrottle, nil); err != nil {
				return nil, err
			}
		}
		if state == campaigns.StateCancelled && !revived {
			what += " (it is cancelled: it does not run)"
		}
		changes = append(changes, journey.Change{Kind: "broadcast", Name: b.Name, What: what})
	}
	for name, b := range current {
		if keep[name] || b.Source != "journey" || (b.State == campaigns.StateCancelled && b.StateReason == removedReason) {
			continue
		}
		n, err := cancelBroadcast(ctx, tx, name, removedReason)
		if err != nil {
			return nil, err
		}
		what := "removed"
		if n > 0 {
			what += fmt.Sprintf("; %d queued sends cancelled", n)
		}
		changes = append(changes, journey.Change{Kind: "broadcast", Name: name, What: what})
	}
	return changes, nil
}

// removedReason is the state reason of a broadcast a journey removed.
const removedReason = "removed from the journey"

// SaveBroadcast creates (create) or edits a broadcast through the API:
// its definition, checked by the caller. A broadcast with a time is
// scheduled (a draft otherwise), unless it is paused; a cancelled one
// cannot be edited. campaigns.ErrNoBroadcast when editing one that does not exist;
// campaigns.ErrBroadcastExists when creating one that does.
func (s *Store) SaveBroadcast(ctx context.Context, b campaigns.Broadcast, create bool, now time.Time) (campaigns.StoredBroadcast, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return campaigns.StoredBroadcast{}, err
	}
	err = s.inTx(ctx, "saving broadcast "+b.Name, func(tx pgx.Tx) error {
		cur, err := broadcasts(ctx, tx, `WHERE b.name = $1 FOR UPDATE OF b`, b.Name)
		if err != nil {
			return err
		}
		switch {
		case create && len(cur) > 0:
			return campaigns.ErrBroadcastExists
		case !create && len(cur) == 0:
			return pgx.ErrNoRows
		case !create && cur[0].State == campaigns.StateCancelled:
			return fmt.Errorf("%w: broadcast %s is cancelled", campaigns.ErrBroadcastState, b.Name)
		}
		state := initialState(b)
		if create {
			_, err := tx.Exec(ctx, `INSERT INTO broadcasts (name, source, definition, state, scheduled_at) VALUES ($1, 'api', $2, $3, $4)`, b.Name, body, state, now)
			return err
		}
		old := cur[0]
		if old.State == campaigns.StatePaused {
			state = old.State
		}
		reanchor := old.SendAt != b.SendAt || old.Schedule != b.Schedule
		if _, err := tx.Exec(ctx, `UPDATE broadcasts SET definition = $2, state = $3, updated_at = now(),
			scheduled_at = CASE WHEN $4 THEN $5 ELSE scheduled_at END WHERE name = $1`, b.Name, body, state, reanchor, now); err != nil {
			return err
		}
		if b.Throttle != old.Throttle {
			_, err = respread(ctx, tx, b.Name, b.Throttle, now, respreadThrottle, nil)
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		err = notFoundErr{campaigns.ErrNoBroadcast}
	}
	if err != nil {
		return campaigns.StoredBroadcast{}, err
	}
	return s.Broadcast(ctx, b.Name)
}

// PauseBroadcast pauses a broadcast: its queued emails wait, without
// expiring, none dropped, and its runs still start (their emails wait too)
// until ResumeBroadcast. An email already on its way goes out. It returns
// how many sends wait.
func (s *Store) PauseBroadcast(ctx context.Context, name string) (int, error) {
	var n int
	err := s.inTx(ctx, "pausing broadcast "+name, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, `SELECT state FROM broadcasts WHERE name = $1 FOR UPDATE`, name).Scan(&state); err != nil {
			return err
		}
		if state == campaigns.StateCancelled {
			return fmt.Errorf("%w: broadcast %s is cancelled", campaigns.ErrBroadcastState, name)
		}
		if _, err := tx.Exec(ctx, `UPDATE broadcasts SET state = 'paused', state_reason = NULL, updated_at = now() WHERE name = $1`, name); err != nil {
			return err
		}
		// (The rest of an A/B test's audience waits for the winner
		// already: its wait is not the pause's.)
		if _, err := tx.Exec(ctx, sqlHoldPausedBy+`broadcast = $1 AND variant IS NOT NULL`,
			name, campaigns.PausedUntil, campaigns.BroadcastPausedReason); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM sends WHERE broadcast = $1 AND status = 'queued'`, name).Scan(&n)
	})
	if errors.Is(err, ErrNotFound) {
		err = notFoundErr{campaigns.ErrNoBroadcast}
	}
	return n, err
}

// ResumeBroadcast resumes a paused broadcast: its waiting emails get their
// time back, or now for those it has passed (a pause is the marketer's
// decision, not lateness that sending: late_expiry would expire), spread
// again by its throttle. It returns how many were released;
// campaigns.ErrBroadcastState when it is not paused.
func (s *Store) ResumeBroadcast(ctx context.Context, name string, now time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, "resuming broadcast "+name, func(tx pgx.Tx) error {
		var def []byte
		if err := tx.QueryRow(ctx, `SELECT definition FROM broadcasts WHERE name = $1 AND state = 'paused' FOR UPDATE`, name).Scan(&def); err != nil {
			return err
		}
		var b campaigns.Broadcast
		if err := json.Unmarshal(def, &b); err != nil {
			return err
		}
		state := initialState(b)
		if _, err := tx.Exec(ctx, `UPDATE broadcasts SET state = $2, state_reason = NULL, updated_at = now() WHERE name = $1`, name, state); err != nil {
			return err
		}
		var err error
		n, err = respread(ctx, tx, name, b.Throttle, now, respreadPaused, nil)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("%w: broadcast %s is not paused", campaigns.ErrBroadcastState, name)
	}
	return int(n), err
}

// CancelBroadcast cancels a broadcast: its queued emails are cancelled
// with the reason, and no run of it starts again. It returns how many
// sends were cancelled.
func (s *Store) CancelBroadcast(ctx context.Context, name, reason string) (int, error) {
	var n int
	err := s.inTx(ctx, "cancelling broadcast "+name, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT true FROM broadcasts WHERE name = $1 FOR UPDATE`, name).Scan(&exists); err != nil {
			return err
		}
		var err error
		n, err = cancelBroadcast(ctx, tx, name, reason)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		err = notFoundErr{campaigns.ErrNoBroadcast}
	}
	return n, err
}

func cancelBroadcast(ctx context.Context, tx pgx.Tx, name, reason string) (int, error) {
	if _, err := tx.Exec(ctx, `UPDATE broadcasts SET state = 'cancelled', state_reason = $2, updated_at = now() WHERE name = $1`, name, reason); err != nil {
		return 0, translate(err, "cancelling broadcast "+name)
	}
	tag, err := tx.Exec(ctx, `UPDATE sends SET status = 'cancelled', delayed_reason = $2, paused_due_at = NULL, updated_at = now()
		WHERE broadcast = $1 AND status = 'queued'`, name, "broadcast cancelled: "+reason)
	if err != nil {
		return 0, translate(err, "cancelling broadcast "+name)
	}
	return int(tag.RowsAffected()), nil
}

// What respread moves.
const (
	// respreadThrottle: the queued emails waiting for their time (not
	// delayed by a policy, not paused), after a change of throttle.
	respreadThrottle = iota
	// respreadPaused: the emails a pause holds, on resuming.
	respreadPaused
	// respreadWinner: the rest of an A/B test's audience, given the
	// winner.
	respreadWinner
)

// sqlRespread gives a broadcast's queued sends (which: the WHERE) their
// time again: each one's base time (never before $3, now), then spread so
// that at most $2 emails a second of it fall due ($2 = 0: no throttle). On
// a paused broadcast they keep waiting, their new time kept for resuming.
// $4 and $5 set the template and variant (a test's winner).
func sqlRespread(base, which string) string {
	return `
WITH r AS (
    SELECT s.contact_id, s.id, greatest(` + base + `, $3::timestamptz) AS base,
           row_number() OVER (PARTITION BY greatest(` + base + `, $3::timestamptz) ORDER BY s.contact_id) - 1 AS k
    FROM sends s
    WHERE s.broadcast = $1 AND s.status = 'queued' AND s.claimed_by IS NULL AND ` + which + `),
t AS (SELECT r.*, r.base + CASE WHEN $2::float8 > 0 THEN make_interval(secs => r.k / $2::float8) ELSE interval '0' END AS due FROM r),
b AS (SELECT state = 'paused' AS paused FROM broadcasts WHERE name = $1)
UPDATE sends s SET
    due_at = CASE WHEN b.paused THEN $6::timestamptz ELSE t.due END,
    paused_due_at = CASE WHEN b.paused THEN t.due END,
    delayed_reason = CASE WHEN b.paused THEN $7 END,
    template = coalesce($4::text, s.template), variant = coalesce($5::smallint, s.variant),
    updated_at = now()
FROM t, b
WHERE s.contact_id = t.contact_id AND s.id = t.id`
}

// winner is the variant a test's rest of the audience gets.
type winner struct {
	run      int64
	template string
	variant  int32
}

// respread moves a broadcast's sends of the kind what (see the consts),
// spread by rate emails a second from now on; w is the winner for
// respreadWinner. It returns how many it moved.
func respread(ctx context.Context, tx pgx.Tx, name string, rate float64, now time.Time, what int, w *winner) (int64, error) {
	var (
		sql     string
		tmpl    *string
		variant *int32
	)
	switch what {
	case respreadThrottle:
		sql = sqlRespread("s.planned_at", "s.variant IS NOT NULL AND s.delayed_reason IS NULL AND s.paused_due_at IS NULL")
	case respreadPaused:
		sql = sqlRespread("coalesce(s.paused_due_at, s.planned_at)", "s.variant IS NOT NULL AND (s.paused_due_at IS NOT NULL OR s.delayed_reason = $8)")
	case respreadWinner:
		sql = sqlRespread("s.planned_at", "s.variant IS NULL AND s.broadcast_run = $8")
		tmpl, variant = &w.template, &w.variant
	}
	args := []any{name, rate, now, tmpl, variant, campaigns.PausedUntil, campaigns.BroadcastPausedReason}
	switch what {
	case respreadPaused:
		args = append(args, campaigns.BroadcastPausedReason)
	case respreadWinner:
		args = append(args, w.run)
	}
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return 0, translate(err, "scheduling the emails of broadcast "+name)
	}
	return tag.RowsAffected(), nil
}

// BroadcastsToRun implements campaigns.BroadcastStore. A broadcast newly
// given a time (by apply) is anchored at now: a schedule's first run is
// the first after it.
func (s *Store) BroadcastsToRun(ctx context.Context, now time.Time) ([]campaigns.StoredBroadcast, error) {
	if _, err := s.db.Exec(ctx, `UPDATE broadcasts SET scheduled_at = $1 WHERE scheduled_at IS NULL AND state IN ('scheduled', 'paused')`, now); err != nil {
		return nil, translate(err, "listing broadcasts to run")
	}
	out, err := broadcasts(ctx, s.db, `WHERE b.state IN ('scheduled', 'paused') ORDER BY b.name`)
	return out, translate(err, "listing broadcasts to run")
}

// runRow is a row of broadcast_runs, read by name.
type runRow struct {
	ID           int64      `db:"id"`
	Broadcast    string     `db:"broadcast"`
	ScheduledFor time.Time  `db:"scheduled_for"`
	Local        bool       `db:"local"`
	Definition   []byte     `db:"definition"`
	StartedAt    time.Time  `db:"started_at"`
	ResolvedAt   *time.Time `db:"resolved_at"`
	Audience     *int64     `db:"audience"`
	DecideAt     *time.Time `db:"decide_at"`
	DecidedAt    *time.Time `db:"decided_at"`
	Decision     []byte     `db:"decision"`
}

func (r runRow) run() (campaigns.BroadcastRun, error) {
	out := campaigns.BroadcastRun{ID: r.ID, Broadcast: r.Broadcast, ScheduledFor: r.ScheduledFor, Local: r.Local, StartedAt: r.StartedAt,
		ResolvedAt: r.ResolvedAt, DecideAt: r.DecideAt, DecidedAt: r.DecidedAt}
	if r.Audience != nil {
		out.Audience = *r.Audience
	}
	if err := json.Unmarshal(r.Definition, &out.Definition); err != nil {
		return out, fmt.Errorf("broadcast %s, run %d: %w", r.Broadcast, r.ID, err)
	}
	if len(r.Decision) > 0 {
		out.Decision = &campaigns.Decision{}
		if err := json.Unmarshal(r.Decision, out.Decision); err != nil {
			return out, fmt.Errorf("broadcast %s, run %d: %w", r.Broadcast, r.ID, err)
		}
	}
	return out, nil
}

const sqlRunRows = `SELECT id, broadcast, scheduled_for, local, definition, started_at, resolved_at, audience, decide_at, decided_at, decision FROM broadcast_runs`

func (s *Store) runs(ctx context.Context, where string, args ...any) ([]campaigns.BroadcastRun, error) {
	return collectAs(ctx, s.db, sqlRunRows+" "+where, args, runRow.run)
}

// StartRun implements campaigns.BroadcastStore.
func (s *Store) StartRun(ctx context.Context, b campaigns.Broadcast, scheduledFor time.Time, local bool, at time.Time) (campaigns.BroadcastRun, bool, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return campaigns.BroadcastRun{}, false, err
	}
	var id int64
	err = s.db.QueryRow(ctx, `INSERT INTO broadcast_runs (broadcast, scheduled_for, local, definition, started_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (broadcast, scheduled_for) DO NOTHING RETURNING id`, b.Name, scheduledFor, local, body, at).Scan(&id)
	created := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.db.QueryRow(ctx, `SELECT id FROM broadcast_runs WHERE broadcast = $1 AND scheduled_for = $2`, b.Name, scheduledFor).Scan(&id)
	}
	if err != nil {
		return campaigns.BroadcastRun{}, false, translate(err, "starting a run of broadcast "+b.Name)
	}
	runs, err := s.runs(ctx, `WHERE id = $1`, id)
	if err != nil || len(runs) == 0 {
		return campaigns.BroadcastRun{}, false, translate(err, "starting a run of broadcast "+b.Name)
	}
	return runs[0], created, nil
}

// UnresolvedRuns implements campaigns.BroadcastStore.
func (s *Store) UnresolvedRuns(ctx context.Context) ([]campaigns.BroadcastRun, error) {
	out, err := s.runs(ctx, `WHERE resolved_at IS NULL AND broadcast IN (SELECT name FROM broadcasts WHERE state <> 'cancelled') ORDER BY id`)
	return out, translate(err, "listing runs to queue")
}

// BroadcastRuns lists a broadcast's runs, newest first.
func (s *Store) BroadcastRuns(ctx context.Context, name string) ([]campaigns.BroadcastRun, error) {
	out, err := s.runs(ctx, `WHERE broadcast = $1 ORDER BY scheduled_for DESC, id DESC`, name)
	return out, translate(err, "listing runs of broadcast "+name)
}

// sqlQueueBroadcastSends queues a run's sends to those of the contacts
// who are subscribed, have an address and are not merged away: once per
// (run, contact) by sends_broadcast_once. The rest of an A/B test's
// audience (variant -1) waits for the winner; on a paused broadcast the
// others wait too, their time kept.
// sqlReachable is whether contact k can receive a broadcast: subscribed,
// with an address, not merged away (the queue and the preview alike).
const sqlReachable = `k.status = 'subscribed' AND coalesce(k.email, '') <> '' AND k.merged_into IS NULL`

const sqlQueueBroadcastSends = `
INSERT INTO sends (contact_id, broadcast, broadcast_run, step, template, variant, ab_test, planned_at, due_at, paused_due_at, delayed_reason)
SELECT v.contact_id, $1, $2, 0, v.template, nullif(v.variant, -1), v.test, v.planned,
       CASE WHEN v.variant = -1 OR b.state = 'paused' THEN $9::timestamptz ELSE v.due END,
       CASE WHEN v.variant <> -1 AND b.state = 'paused' THEN v.due END,
       CASE WHEN v.variant = -1 THEN $10 WHEN b.state = 'paused' THEN $11 END
FROM unnest($3::bigint[], $4::text[], $5::int[], $6::bool[], $7::timestamptz[], $8::timestamptz[]) AS v(contact_id, template, variant, test, planned, due)
JOIN contacts k ON k.id = v.contact_id
JOIN broadcasts b ON b.name = $1
WHERE ` + sqlReachable + `
ON CONFLICT DO NOTHING`

// QueueBroadcastSends implements campaigns.BroadcastStore.
func (s *Store) QueueBroadcastSends(ctx context.Context, run campaigns.BroadcastRun, sends []campaigns.BroadcastSend) (int, error) {
	n := len(sends)
	ids, tmpls, variants, tests := make([]int64, n), make([]string, n), make([]int32, n), make([]bool, n)
	planned, due := make([]time.Time, n), make([]time.Time, n)
	for i, x := range sends {
		ids[i], tmpls[i], variants[i], tests[i], planned[i], due[i] = x.ContactID, x.Template, int32(x.Variant), x.Test, x.Planned, x.Due
	}
	tag, err := s.db.Exec(ctx, sqlQueueBroadcastSends, run.Broadcast, run.ID, ids, tmpls, variants, tests, planned, due,
		campaigns.PausedUntil, campaigns.AwaitingWinnerReason, campaigns.BroadcastPausedReason)
	if err != nil {
		return 0, translate(err, "queueing broadcast "+run.Broadcast)
	}
	return int(tag.RowsAffected()), nil
}

// Reachable returns those of ids a broadcast would queue an email to:
// subscribed, with an address, not merged away (a preview).
func (s *Store) Reachable(ctx context.Context, ids []int64) ([]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT k.id FROM contacts k WHERE k.id = ANY($1::bigint[]) AND `+sqlReachable+` ORDER BY k.id`, ids)
	if err != nil {
		return nil, translate(err, "previewing a broadcast's audience")
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return out, translate(err, "previewing a broadcast's audience")
}

// ResolvedRun implements campaigns.BroadcastStore: the audience is what
// was queued, and an A/B test is decided its wait after the test's first
// email is due (at once when the test share is empty).
func (s *Store) ResolvedRun(ctx context.Context, run campaigns.BroadcastRun, at time.Time) error {
	var after time.Duration
	test := run.Definition.Test != nil
	if test {
		after = run.Definition.Test.After
	}
	_, err := s.db.Exec(ctx, `UPDATE broadcast_runs r SET resolved_at = $2,
    audience = (SELECT count(*) FROM sends s WHERE s.broadcast_run = r.id),
    decide_at = CASE WHEN $3 THEN (SELECT CASE WHEN min(s.planned_at) IS NULL THEN $2 ELSE greatest(min(s.planned_at), $2) + $4::interval END
                                    FROM sends s WHERE s.broadcast_run = r.id AND s.ab_test) END
WHERE r.id = $1 AND r.resolved_at IS NULL`, run.ID, at, test, after)
	return translate(err, "recording the audience of broadcast "+run.Broadcast)
}

// RunsToDecide implements campaigns.BroadcastStore.
func (s *Store) RunsToDecide(ctx context.Context, now time.Time) ([]campaigns.BroadcastRun, error) {
	out, err := s.runs(ctx, `WHERE resolved_at IS NOT NULL AND decided_at IS NULL AND decide_at <= $1
		AND broadcast IN (SELECT name FROM broadcasts WHERE state <> 'cancelled') ORDER BY id`, now)
	return out, translate(err, "listing A/B tests to decide")
}

// TestSends implements campaigns.BroadcastStore.
func (s *Store) TestSends(ctx context.Context, run campaigns.BroadcastRun) (*time.Time, int, error) {
	var (
		first   *time.Time
		pending int
	)
	err := s.db.QueryRow(ctx, `SELECT min(sent_at) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status IN ('queued', 'sending'))
FROM sends WHERE broadcast_run = $1 AND ab_test`, run.ID).Scan(&first, &pending)
	return first, pending, translate(err, "reading the test emails of broadcast "+run.Broadcast)
}

// PostponeDecision implements campaigns.BroadcastStore.
func (s *Store) PostponeDecision(ctx context.Context, run campaigns.BroadcastRun, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE broadcast_runs SET decide_at = $2 WHERE id = $1 AND decided_at IS NULL`, run.ID, at)
	return translate(err, "postponing the A/B test of broadcast "+run.Broadcast)
}

// sqlVariantFigures counts, per variant of a run's test share, the emails
// sent and the people (contacts) who opened or clicked one ($2) as people
// by $3: Waymark's own record of the open or click (kind internal: not an
// event a client sent under that name), not flagged as a machine's — or,
// by conversions, whose email was credited with a conversion (by the
// event's time, $3; $2 unused).
const sqlVariantFigures = `
SELECT s.variant::int AS variant,
       count(*) FILTER (WHERE s.status = 'sent')::int AS sent,
       count(*) FILTER (WHERE s.status = 'sent' AND CASE WHEN $2 = '' THEN EXISTS (
           SELECT 1 FROM conversions x WHERE x.send_id = s.id AND x.occurred_at <= $3)
       ELSE EXISTS (
           SELECT 1 FROM contacts k JOIN events e ON e.contact_id = coalesce(k.merged_into, k.id)
           WHERE k.id = s.contact_id AND e.name = $2 AND e.kind = 'internal' AND NOT ` + sqlMachineFlag + `
             AND ` + sqlEventSend + ` = s.id AND e.occurred_at <= $3) END)::int AS people
FROM sends s
WHERE s.broadcast_run = $1 AND s.ab_test
GROUP BY s.variant`

// VariantFigures implements campaigns.BroadcastStore.
func (s *Store) VariantFigures(ctx context.Context, run campaigns.BroadcastRun, pickBy string, until time.Time) ([]campaigns.VariantResult, error) {
	// "" : by conversions.
	event, ok := map[string]string{campaigns.PickOpens: "email_opened", campaigns.PickClicks: "email_clicked", campaigns.PickConversions: ""}[pickBy]
	if !ok {
		return nil, fmt.Errorf("broadcast %s: no A/B test picks by %q", run.Broadcast, pickBy)
	}
	type row struct {
		Variant int `db:"variant"`
		Sent    int `db:"sent"`
		People  int `db:"people"`
	}
	out := []campaigns.VariantResult{}
	if t := run.Definition.Test; t != nil {
		for i := range t.Variants {
			out = append(out, campaigns.VariantResult{Variant: i})
		}
	}
	got, err := queryRows[row](ctx, s.db, sqlVariantFigures, run.ID, event, until)
	if err != nil {
		return nil, translate(err, "counting the results of broadcast "+run.Broadcast)
	}
	for _, r := range got {
		if r.Variant >= 0 && r.Variant < len(out) {
			out[r.Variant].Sent, out[r.Variant].People = r.Sent, r.People
		}
	}
	return out, nil
}

// DecideRun implements campaigns.BroadcastStore: the decision is recorded
// once, and the rest of the audience gets the winner — at their own time,
// or now for those it has passed — spread by the throttle.
func (s *Store) DecideRun(ctx context.Context, run campaigns.BroadcastRun, d campaigns.Decision, now time.Time) (bool, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return false, err
	}
	decided := false
	err = s.inTx(ctx, "deciding the A/B test of broadcast "+run.Broadcast, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE broadcast_runs SET decided_at = $2, decision = $3 WHERE id = $1 AND decided_at IS NULL`, run.ID, now, body)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		decided = true
		// The throttle now, which the API may have changed.
		var def []byte
		rate := run.Definition.Throttle
		if err := tx.QueryRow(ctx, `SELECT definition FROM broadcasts WHERE name = $1`, run.Broadcast).Scan(&def); err == nil {
			var b campaigns.Broadcast
			if json.Unmarshal(def, &b) == nil {
				rate = b.Throttle
			}
		}
		_, err = respread(ctx, tx, run.Broadcast, rate, now, respreadWinner,
			&winner{run: run.ID, template: run.Definition.TemplateOf(d.Winner), variant: int32(d.Winner)})
		return err
	})
	return decided, err
}

var _ campaigns.BroadcastStore = (*Store)(nil)

const sqlBroadcastProgress = `
SELECT broadcast_run AS run,
       count(*) AS audience,
       count(*) FILTER (WHERE status = 'queued' AND delayed_reason IS NULL) AS queued,
       count(*) FILTER (WHERE status = 'queued' AND delayed_reason IS NOT NULL AND variant IS NOT NULL) AS deferred,
       count(*) FILTER (WHERE status = 'queued' AND variant IS NULL) AS awaiting_winner,
       count(*) FILTER (WHERE status = 'sending') AS sending,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'unknown') AS unknown,
       count(*) FILTER (WHERE status = 'suppressed') AS suppressed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'expired') AS expired
FROM sends WHERE broadcast_run = ANY($1) GROUP BY broadcast_run`

// sqlBroadcastReasons groups why the runs' emails wait or did not go out,
// the 20 commonest a run; the A/B test's wait is counted apart
// (awaiting_winner).
const sqlBroadcastReasons = `
SELECT run, reason, count FROM (
    SELECT broadcast_run AS run,
           CASE WHEN status = 'failed' THEN 'failed: ' || left(coalesce(smtp_response, ''), 120)
                ELSE status || ': ' || coalesce(delayed_reason, '') END AS reason, count(*) AS count
    FROM sends WHERE broadcast_run = ANY($1) AND status NOT IN ('sent', 'sending', 'unknown')
      AND NOT (status = 'queued' AND (delayed_reason IS NULL OR variant IS NULL))
    GROUP BY 1, 2) r
ORDER BY run, count DESC, reason`

// sqlVariantProgress: per run, variant, and test share or rest, the
// emails sent and the people who opened and clicked them.
const sqlVariantProgress = `
SELECT s.broadcast_run AS run, s.variant::int AS variant, coalesce(s.ab_test, false) AS test,
       count(*) FILTER (WHERE s.status = 'sent') AS sent,
       count(*) FILTER (WHERE s.status = 'sent' AND EXISTS (SELECT 1 FROM contacts k JOIN events e ON e.contact_id = coalesce(k.merged_into, k.id)
           WHERE k.id = s.contact_id AND e.name = 'email_opened' AND e.properties->>'send_id' = s.id::text)) AS opened,
       count(*) FILTER (WHERE s.status = 'sent' AND EXISTS (SELECT 1 FROM contacts k JOIN events e ON e.contact_id = coalesce(k.merged_into, k.id)
           WHERE k.id = s.contact_id AND e.name = 'email_clicked' AND e.properties->>'send_id' = s.id::text)) AS clicked
FROM sends s WHERE s.broadcast_run = ANY($1) AND s.variant IS NOT NULL
GROUP BY 1, 2, 3 ORDER BY 1, 3 DESC, 2`

// BroadcastProgress returns a broadcast's runs, newest first, with their
// progress, the reasons emails wait or did not go out, and each variant's
// figures so far. ErrNotFound when there is no such broadcast.
func (s *Store) BroadcastProgress(ctx context.Context, name string) ([]campaigns.RunProgress, error) {
	runs, err := s.BroadcastRuns(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		// No run yet, or no such broadcast: say which.
		if _, err := s.Broadcast(ctx, name); err != nil {
			return nil, err
		}
		return []campaigns.RunProgress{}, nil
	}
	// The figures of every run at once, a query each (not three a run: a
	// daily schedule has 365 runs a year).
	ids := make([]int64, len(runs))
	at := make(map[int64]int, len(runs))
	out := make([]campaigns.RunProgress, len(runs))
	for i, run := range runs {
		ids[i], at[run.ID], out[i].Run = run.ID, i, run
		out[i].Reasons, out[i].Variants = []campaigns.ReasonCount{}, []campaigns.VariantProgress{}
	}
	doing := "reading the progress of broadcast " + name
	type progressRow struct {
		Run int64 `db:"run"`
		campaigns.Progress
	}
	progress, err := queryRows[progressRow](ctx, s.db, sqlBroadcastProgress, ids)
	if err != nil {
		return nil, translate(err, doing)
	}
	for _, p := range progress {
		out[at[p.Run]].Progress = p.Progress
	}
	type reasonRow struct {
		Run int64 `db:"run"`
		campaigns.ReasonCount
	}
	reasons, err := queryRows[reasonRow](ctx, s.db, sqlBroadcastReasons, ids)
	if err != nil {
		return nil, translate(err, doing)
	}
	for _, r := range reasons {
		if o := &out[at[r.Run]]; len(o.Reasons) < 20 {
			o.Reasons = append(o.Reasons, r.ReasonCount)
		}
	}
	type variantRow struct {
		Run int64 `db:"run"`
		campaigns.VariantProgress
	}
	variants, err := queryRows[variantRow](ctx, s.db, sqlVariantProgress, ids)
	if err != nil {
		return nil, translate(err, doing)
	}
	for _, v := range variants {
		o := &out[at[v.Run]]
		if t := o.Run.Definition.Test; t != nil && v.Variant < len(t.Variants) {
			v.Label = t.Label(v.Variant)
		} else {
			v.Label = "template " + o.Run.Definition.Template
		}
		v.Variant++
		o.Variants = append(o.Variants, v.VariantProgress)
	}
	return out, nil
}
