package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// The generated history must be one the product could have written: moves
// chained from awareness to each contact's stage, emails of the contact's
// own enrolments, opens and clicks of emails that were sent, rows in time
// order; and the rollups must count it.
func TestDashboardDataIsConsistent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	now := clock.Now()
	if _, err := LoadSweepData(ctx, pool, SweepSize{Contacts: 600, Events: 12_000}, now, io.Discard); err != nil {
		t.Fatal(err)
	}
	st := store.New(pool)
	if _, err := LoadDashboardData(ctx, pool, now, io.Discard); err == nil {
		t.Fatal("history generated without a journey applied")
	}
	j, err := journey.Load("../../examples/journey.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyJourney(ctx, j, false); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDashboardData(ctx, pool, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.Contacts != 600 || d.Moved == 0 || d.Transitions < d.Moved || d.Sent == 0 || d.Opens == 0 || d.Clicks == 0 || d.Draws == 0 {
		t.Fatalf("implausible history: %s", d)
	}
	count := func(what, sql string) int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return n
	}
	for _, c := range []struct {
		what string
		want int64
		sql  string
	}{
		{"transitions", d.Transitions, `SELECT count(*) FROM transitions`},
		{"enrolments", d.Enrolments, `SELECT count(*) FROM enrolments`},
		{"emails", d.Sends, `SELECT count(*) FROM sends`},
		{"sent emails", d.Sent, `SELECT count(*) FROM sends WHERE status = 'sent'`},
		{"opens", d.Opens, `SELECT count(*) FROM events WHERE message_id LIKE 'dash-o-%'`},
		{"contacts whose stage is not where their moves end", 0, `SELECT count(*) FROM contacts c
			LEFT JOIN LATERAL (SELECT to_stage, at FROM transitions t WHERE t.contact_id = c.id ORDER BY seq DESC LIMIT 1) l ON true
			WHERE c.stage <> coalesce(l.to_stage, 'awareness') OR c.stage_entered_at <> coalesce(l.at, c.created_at)`},
		{"moves not from the stage the previous one reached", 0, `SELECT count(*) FROM (
			SELECT from_stage, coalesce(lag(to_stage) OVER (PARTITION BY contact_id ORDER BY seq), 'awareness') AS prev FROM transitions) x
			WHERE from_stage <> prev`},
		{"moves by a rule that does not move between those stages", 0, `SELECT count(*) FROM transitions t
			WHERE NOT EXISTS (SELECT 1 FROM rules r WHERE r.name = t.rule AND t.from_stage = ANY (r.from_stages) AND r.to_stage = t.to_stage)`},
		{"moves not stored in time order", 0, `SELECT count(*) FROM (SELECT at, lag(at) OVER (ORDER BY seq) AS prev FROM transitions) x WHERE at < prev`},
		{"emails of another contact's or sequence's enrolment", 0, `SELECT count(*) FROM sends s
			LEFT JOIN enrolments e ON e.contact_id = s.contact_id AND e.id = s.enrolment_id
			WHERE s.enrolment_id IS NOT NULL AND (e.id IS NULL OR e.sequence IS DISTINCT FROM s.sequence)`},
		{"emails of templates the journey lacks", 0, `SELECT count(*) FROM sends s WHERE NOT EXISTS (SELECT 1 FROM templates t WHERE t.name = s.template)`},
		{"opens or clicks of an email not sent to that contact before them", 0, `SELECT count(*) FROM events e
			LEFT JOIN sends s ON s.contact_id = e.contact_id AND s.id = (e.properties->>'send_id')::bigint AND s.status = 'sent' AND s.sent_at <= e.occurred_at
			WHERE e.message_id LIKE 'dash-%' AND e.name IN ('email_opened', 'email_clicked') AND s.id IS NULL`},
		{"emails due in the past still queued", 0, `SELECT count(*) FROM sends WHERE status = 'queued' AND due_at <= '` + now.Format(time.RFC3339Nano) + `'::timestamptz - interval '1 minute'`},
	} {
		if got := count(c.what, c.sql); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}

	// A second load replaces the first (the same history: seeded).
	events := count("events", `SELECT count(*) FROM events`)
	d2, err := LoadDashboardData(ctx, pool, now, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d.Elapsed, d2.Elapsed = 0, 0
	if d2 != d {
		t.Errorf("second load: %s, want %s", d2, d)
	}
	if got := count("events", `SELECT count(*) FROM events`); got != events {
		t.Errorf("events after a second load: %d, want %d", got, events)
	}

	// The rollups count what was generated.
	if _, err := st.RefreshStats(ctx, now, true); err != nil {
		t.Fatal(err)
	}
	if got := count("stats_moves", `SELECT coalesce(sum(n), 0)::bigint FROM stats_moves`); got != d.Transitions {
		t.Errorf("moves in the rollup: %d, want %d", got, d.Transitions)
	}
	if got := count("stats_steps", `SELECT coalesce(sum(sent), 0)::bigint FROM stats_steps`); got != d.Sent {
		t.Errorf("emails sent in the rollup: %d, want %d", got, d.Sent)
	}
	if got := count("stats_steps opened", `SELECT coalesce(sum(opened), 0)::bigint FROM stats_steps`); got == 0 {
		t.Error("no opened emails in the rollup")
	}
}
