package store_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/store"
)

// history writes a hand-made history straight into the tables: contacts,
// the emails sent to them, their stage moves and their events.
type history struct {
	t   *testing.T
	db  store.DB
	now time.Time
	n   int
}

func (h *history) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.db.Exec(context.Background(), sql, args...); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
}

func (h *history) contact(id int64, stage string) {
	h.t.Helper()
	h.exec(`INSERT INTO contacts (id, email, stage, created_at) VALUES ($1, $2, $3, $4)`, id, fmt.Sprintf("c%d@example.com", id), stage, h.now.Add(-30*24*time.Hour))
}

// send records an email sent to contact: of a sequence's step (from 0),
// or of a broadcast run's variant (from 0) when run > 0.
func (h *history) send(contact int64, template, sequence string, step int, run int64, variant int) int64 {
	h.t.Helper()
	var id int64
	var seq, bc any
	if sequence != "" {
		seq = sequence
	}
	var runID, v any
	if run > 0 {
		if err := h.db.QueryRow(context.Background(), `SELECT broadcast FROM broadcast_runs WHERE id = $1`, run).Scan(&bc); err != nil {
			h.t.Fatal(err)
		}
		runID, v = run, variant
	}
	if err := h.db.QueryRow(context.Background(), `INSERT INTO sends (contact_id, sequence, step, template, status, due_at, sent_at, broadcast, broadcast_run, variant, ab_test)
		VALUES ($1, $2, $3, $4, 'sent', $5, $5, $6, $7, $8, $9) RETURNING id`,
		contact, seq, step, template, h.now.Add(-10*24*time.Hour), bc, runID, v, run > 0).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// run records a broadcast run with an A/B test.
func (h *history) run(broadcast string) int64 {
	h.t.Helper()
	var id int64
	if err := h.db.QueryRow(context.Background(), `INSERT INTO broadcast_runs (broadcast, scheduled_for, local, definition, started_at, resolved_at, decide_at)
		VALUES ($1, $2, false, '{}', $2, $2, $3) RETURNING id`, broadcast, h.now.Add(-11*24*time.Hour), h.now.Add(-10*24*time.Hour)).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// event records an event of contact at now - ago; props is its JSON.
func (h *history) event(contact int64, name string, ago time.Duration, props string) string {
	h.t.Helper()
	h.n++
	id := fmt.Sprintf("m%d-%s", h.n, name)
	h.exec(`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', $3, $4, $5)`,
		contact, id, name, props, h.now.Add(-ago))
	return id
}

// open and click record what Waymark's tracking links record: events
// of kind internal.
func (h *history) open(contact, send int64, ago time.Duration) {
	h.internal(contact, "email_opened", ago, fmt.Sprintf(`{"send_id": %d}`, send))
}

func (h *history) click(contact, send int64, ago time.Duration) {
	h.internal(contact, "email_clicked", ago, fmt.Sprintf(`{"send_id": %d}`, send))
}

func (h *history) internal(contact int64, name string, ago time.Duration, props string) {
	h.t.Helper()
	h.n++
	h.exec(`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'internal', $3, $4, $5)`,
		contact, fmt.Sprintf("m%d-%s", h.n, name), name, props, h.now.Add(-ago))
}

func (h *history) move(contact int64, from, to string, ago time.Duration) {
	h.exec(`INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at) VALUES ($1, $2, $3, 'r', 1, '{}', 'sweep', $4)`,
		contact, from, to, h.now.Add(-ago))
}

// conversionOf is one contact's conversions.
func conversionsOf(t *testing.T, s *store.Store, contact int64) []report.Conversion {
	t.Helper()
	cs, err := s.Conversions(context.Background(), contact)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func attribute(t *testing.T, s *store.Store, now time.Time, want int64) {
	t.Helper()
	n, err := s.AttributeConversions(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("the pass credited %d conversions, want %d", n, want)
	}
}

// checkConversion compares a conversion with what the history says, by
// hand.
func checkConversion(t *testing.T, name string, got []report.Conversion, want report.Conversion) {
	t.Helper()
	if len(got) != 1 {
		t.Errorf("%s: %d conversions %+v, want 1", name, len(got), got)
		return
	}
	g := got[0]
	g.Attributed = time.Time{}
	if math.Abs(g.Value-want.Value) < 1e-9 {
		g.Value = want.Value
	}
	if !g.At.Equal(want.At) || !g.TouchAt.Equal(want.TouchAt) {
		t.Errorf("%s: at %v, touch at %v; want %v, %v", name, g.At, g.TouchAt, want.At, want.TouchAt)
	}
	g.At, g.TouchAt = want.At, want.TouchAt
	if g != want {
		t.Errorf("%s:\n got  %+v\n want %+v", name, g, want)
	}
}

// A hand-made history of orders, emails, human and machine opens and
// clicks: each order is credited to the email the contact last opened or
// clicked as a person within (order - 5d, order], at one instant a click
// before an open, with its revenue and the contact's stage then, and the
// reason in words; an order without one is recorded uncredited. A second
// pass credits nothing again.
func TestAttributionCreditsTheLastHumanOpenOrClickInTheWindow(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	now := clock.Now().UTC().Truncate(time.Second)
	h := &history{t: t, db: pool, now: now}
	const day = 24 * time.Hour
	order := func(c int64, props string) string { return h.event(c, "order_completed", 0, props) }

	// 1: a human open 3h 12m before the order; the contact moved to
	// consideration 10 days before and on to decision an hour after it.
	h.contact(1, "decision")
	s1 := h.send(1, "welcome-2", "welcome", 1, 0, 0)
	h.open(1, s1, 3*time.Hour+12*time.Minute)
	h.move(1, "awareness", "consideration", 10*day)
	h.move(1, "consideration", "decision", -time.Hour)
	m1 := order(1, `{"revenue": 49.90}`)

	// 2: only machines opened (by either way of flagging them).
	h.contact(2, "retention")
	s2 := h.send(2, "welcome-2", "welcome", 1, 0, 0)
	h.internal(2, "email_opened", time.Hour, fmt.Sprintf(`{"send_id": %d, "machine": true}`, s2))
	h.internal(2, "email_opened_machine", 2*time.Hour, fmt.Sprintf(`{"send_id": %d}`, s2))
	h.internal(2, "email_clicked", 3*time.Hour, fmt.Sprintf(`{"send_id": %d, "machine": true}`, s2))
	m2 := order(2, `{"revenue": 10}`)

	// 3: opened 5d and 1s before: outside the window.
	h.contact(3, "retention")
	s3 := h.send(3, "welcome-2", "welcome", 1, 0, 0)
	h.open(3, s3, 5*day+time.Second)
	m3 := order(3, `{"revenue": 10}`)

	// 4: opened exactly 5d before: the window is (t - 5d, t], so not
	// credited either.
	h.contact(4, "retention")
	s4 := h.send(4, "welcome-2", "welcome", 1, 0, 0)
	h.open(4, s4, 5*day)
	m4 := order(4, `{"revenue": 10}`)

	// 5: opened 5d less 1s before: inside; and one more email opened an
	// hour after the order, which does not count.
	h.contact(5, "retention")
	s5 := h.send(5, "reorder", "replenish", 0, 0, 0)
	s5b := h.send(5, "welcome-2", "welcome", 1, 0, 0)
	h.open(5, s5, 5*day-time.Second)
	h.open(5, s5b, -time.Hour)
	m5 := order(5, `{"revenue": 10}`)

	// 6: opened email A 2 days before, clicked email B a day before: B.
	// An email_clicked of A an hour before, sent by a client through the
	// tracking API (kind track), is not a click of Waymark's links.
	h.contact(6, "retention")
	a6 := h.send(6, "welcome-2", "welcome", 1, 0, 0)
	b6 := h.send(6, "reorder", "replenish", 2, 0, 0)
	h.open(6, a6, 2*day)
	h.click(6, b6, day)
	h.event(6, "email_clicked", time.Hour, fmt.Sprintf(`{"send_id": %d}`, a6))
	m6 := order(6, `{"revenue": 30}`)

	// 7: at one instant, 30 minutes before, a click on a broadcast's
	// second variant and an open of a sequence's email: the click.
	run := h.run("winter-catalogue")
	h.contact(7, "advocacy")
	seq7 := h.send(7, "reorder", "replenish", 0, 0, 0)
	bc7 := h.send(7, "winter-b", "", 0, run, 1)
	h.open(7, seq7, 30*time.Minute)
	h.click(7, bc7, 30*time.Minute)
	m7 := order(7, `{"revenue": 200}`)

	// 8: no email at all; revenue as a numeric string; the contact moved
	// out of retention only after the order.
	h.contact(8, "advocacy")
	h.move(8, "retention", "advocacy", -2*time.Hour)
	m8 := order(8, `{"revenue": "120.50"}`)

	// 9: an open naming another contact's email, and revenue that is no
	// number.
	h.contact(9, "retention")
	h.open(9, s1, time.Hour)
	m9 := order(9, `{"revenue": "abc"}`)

	// 10: an open at the very instant of the order counts.
	h.contact(10, "retention")
	s10 := h.send(10, "reorder", "replenish", 0, 0, 0)
	h.open(10, s10, 0)
	m10 := order(10, `{}`)

	attribute(t, s, now, 10)

	notCredited := "no email opened or clicked as a person within 5d before it: not credited to an email"
	conv := func(c int64, msg string, value float64, stage string) report.Conversion {
		return report.Conversion{ContactID: c, MessageID: msg, Event: "order_completed", At: now, Value: value, Stage: stage, Reason: notCredited}
	}
	credited := func(cv report.Conversion, send int64, touch string, ago time.Duration, template, sequence, broadcast, reason string) report.Conversion {
		cv.SendID, cv.Touch, cv.TouchAt, cv.Template, cv.Sequence, cv.Broadcast, cv.Reason = send, touch, now.Add(-ago), template, sequence, broadcast, reason
		return cv
	}
	checkConversion(t, "human open", conversionsOf(t, s, 1), credited(conv(1, m1, 49.90, "consideration"), s1, "opened", 3*time.Hour+12*time.Minute, "welcome-2", "welcome", "",
		"credited to welcome-2 (sequence welcome, step 2): opened 3h 12m before, the only email this contact opened or clicked as a person within 5d"))
	checkConversion(t, "machine opens only", conversionsOf(t, s, 2), conv(2, m2, 10, "retention"))
	checkConversion(t, "5d and 1s before", conversionsOf(t, s, 3), conv(3, m3, 10, "retention"))
	checkConversion(t, "exactly 5d before", conversionsOf(t, s, 4), conv(4, m4, 10, "retention"))
	checkConversion(t, "5d less 1s before", conversionsOf(t, s, 5), credited(conv(5, m5, 10, "retention"), s5, "opened", 5*day-time.Second, "reorder", "replenish", "",
		"credited to reorder (sequence replenish, step 1): opened 4d 23h before, the only email this contact opened or clicked as a person within 5d"))
	checkConversion(t, "the later of two", conversionsOf(t, s, 6), credited(conv(6, m6, 30, "retention"), b6, "clicked", day, "reorder", "replenish", "",
		"credited to reorder (sequence replenish, step 3): clicked 1d before, the last of 2 emails this contact opened or clicked as a person within 5d"))
	checkConversion(t, "a click before an open", conversionsOf(t, s, 7), credited(conv(7, m7, 200, "advocacy"), bc7, "clicked", 30*time.Minute, "winter-b", "", "winter-catalogue",
		"credited to winter-b (broadcast winter-catalogue, variant 2): clicked 30m before, the last of 2 emails this contact opened or clicked as a person within 5d"))
	checkConversion(t, "no email", conversionsOf(t, s, 8), conv(8, m8, 120.50, "retention"))
	checkConversion(t, "another's email", conversionsOf(t, s, 9), conv(9, m9, 0, "retention"))
	checkConversion(t, "the same instant", conversionsOf(t, s, 10), credited(conv(10, m10, 0, "retention"), s10, "opened", 0, "reorder", "replenish", "",
		"credited to reorder (sequence replenish, step 1): opened at the same moment, the only email this contact opened or clicked as a person within 5d"))

	// A second pass: nothing new, nothing credited twice.
	attribute(t, s, now, 0)
	var rows int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM conversions`).Scan(&rows); err != nil || rows != 10 {
		t.Errorf("%d conversions stored (%v), want 10", rows, err)
	}

	// A later click of another email changes nothing already credited; a
	// new order 5 minutes after now (still before the move to decision an
	// hour after now) is credited to it.
	s1b := h.send(1, "reorder", "replenish", 0, 0, 0)
	h.click(1, s1b, -time.Minute)
	m1b := h.event(1, "order_completed", -5*time.Minute, `{"revenue": 5}`)
	attribute(t, s, now, 1)
	got := conversionsOf(t, s, 1)
	if len(got) != 2 || got[0].MessageID != m1b || got[0].SendID != s1b || got[0].Touch != "clicked" || got[0].Value != 5 || got[0].Stage != "consideration" ||
		got[1].MessageID != m1 || got[1].SendID != s1 {
		t.Errorf("after a second order: %+v", got)
	}
	if got[0].Reason != "credited to reorder (sequence replenish, step 1): clicked 4m before, the last of 2 emails this contact opened or clicked as a person within 5d" {
		t.Errorf("second order's reason: %q", got[0].Reason)
	}
}

// Goal events stored by a transaction still running when a pass reads are
// attributed by the next pass, once; events imported together in one
// transaction are attributed together.
func TestAttributionTakesEventsCommittedSinceTheLastPass(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	ctx := context.Background()
	now := clock.Now().UTC().Truncate(time.Second)
	h := &history{t: t, db: pool, now: now}
	for c := int64(1); c <= 3; c++ {
		h.contact(c, "retention")
	}
	send := h.send(1, "reorder", "replenish", 0, 0, 0)
	attribute(t, s, now, 0) // the first pass: nothing stored yet

	// An import: opens and orders of three contacts in one transaction,
	// still running during a pass.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	it := &history{t: t, db: tx, now: now}
	it.open(1, send, time.Hour)
	it.event(1, "order_completed", 0, `{"revenue": 12}`)
	it.event(2, "order_completed", time.Minute, `{"revenue": 3}`)
	it.event(3, "order_completed", 2*time.Minute, `{"revenue": 4}`)
	it.event(3, "page_viewed", 0, `{}`)
	attribute(t, s, now, 0)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	attribute(t, s, now, 3)
	attribute(t, s, now, 0)
	if c := conversionsOf(t, s, 1); len(c) != 1 || c[0].SendID != send || c[0].Value != 12 {
		t.Errorf("contact 1: %+v", c)
	}
	if c := conversionsOf(t, s, 3); len(c) != 1 || c[0].SendID != 0 || c[0].Value != 4 || !c[0].At.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("contact 3: %+v", c)
	}
}

// Re-applying the journey with another goal attributes the new goal's
// events already stored, once; what was credited stays. Going back to the
// first goal credits nothing twice.
func TestAttributionAfterTheGoalChanges(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	now := clock.Now().UTC().Truncate(time.Second)
	h := &history{t: t, db: pool, now: now}
	h.contact(1, "consideration")
	send := h.send(1, "trial", "onboarding", 0, 0, 0)
	h.click(1, send, 2*time.Hour)
	h.event(1, "order_completed", time.Hour, `{"revenue": 20}`)
	h.event(1, "plan_upgraded", 30*time.Minute, `{"amount": "99"}`)
	attribute(t, s, now, 1)

	const upgraded = "conversion:\n  event: plan_upgraded\n  value: amount\n  window: 12h\n"
	j, err := journey.Parse("j.yaml", []byte(upgraded))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := s.ApplyJourney(context.Background(), j, false)
	want := `conversion goal "plan_upgraded" changed: event plan_upgraded, value amount, window 12h (was event order_completed, value revenue, window 5d); the next attribution pass credits the plan_upgraded events already stored`
	// (The first apply saves the default sending settings too.)
	if err != nil || len(changes) != 2 || changes[1].String() != want {
		t.Fatalf("applying another goal: %v, %v; want %s", changes, err, want)
	}
	if g, err := s.ConversionGoal(context.Background()); err != nil || g != (report.Goal{Event: "plan_upgraded", Value: "amount", Window: 12 * time.Hour}) {
		t.Fatalf("stored goal %+v, %v", g, err)
	}
	attribute(t, s, now, 1)
	attribute(t, s, now, 0)
	got := conversionsOf(t, s, 1)
	if len(got) != 2 || got[0].Event != "plan_upgraded" || got[0].Value != 99 || got[0].SendID != send || got[0].Touch != "clicked" ||
		got[0].Reason != "credited to trial (sequence onboarding, step 1): clicked 1h 30m before, the only email this contact opened or clicked as a person within 12h" ||
		got[1].Event != "order_completed" || got[1].Value != 20 {
		t.Errorf("after the goal changed: %+v", got)
	}
	// Re-applying the same goal changes nothing; going back re-reads the
	// orders, already credited.
	changes, err = s.ApplyJourney(context.Background(), j, false)
	if err != nil || len(changes) != 0 {
		t.Errorf("the same goal again: %v, %v", changes, err)
	}
	applyJourney(t, s, "conversion:\n  event: order_completed\n  value: revenue\n")
	attribute(t, s, now, 0)
	if got := conversionsOf(t, s, 1); len(got) != 2 {
		t.Errorf("back to orders: %+v", got)
	}
}

// A contact merged into another: an email sent to an anonymous contact,
// opened, and an order credited to it; the merge moves the events and the
// conversion to the identified contact, and the moved order is not
// credited again; a new order of the person is credited to the email sent
// before the merge (a send of a contact merged into theirs).
func TestAttributionAcrossAMerge(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	ctx := context.Background()
	now := clock.Now().UTC().Truncate(time.Second)
	h := &history{t: t, db: pool, now: now}
	at := func(m ingest.Message) ingest.Message { m.Timestamp = now.Add(-4 * time.Hour); return m }
	mustIngest(t, s, at(track("", "anon1", "v1", "page_viewed", "")), at(identify("u1", "", "i1", `{}`, "u1@example.com")))
	var anon, person int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT contact_id FROM identities WHERE identity = 'a:anon1'), (SELECT contact_id FROM identities WHERE identity = 'u:u1')`).Scan(&anon, &person); err != nil {
		t.Fatal(err)
	}
	send := h.send(anon, "cart", "abandoned-cart", 0, 0, 0)
	h.open(anon, send, 3*time.Hour)
	first := h.event(anon, "order_completed", 2*time.Hour, `{"revenue": 15}`)
	attribute(t, s, now, 1)
	if err := s.RefreshReports(ctx, now, false); err != nil {
		t.Fatal(err)
	}

	mustIngest(t, s, at(identify("u1", "anon1", "i2", `{}`, "")))
	var merged *int64
	if err := pool.QueryRow(ctx, `SELECT merged_into FROM contacts WHERE id = $1`, anon).Scan(&merged); err != nil || merged == nil || *merged != person {
		t.Fatalf("the anonymous contact was not merged into the person: %v, %v", merged, err)
	}
	second := h.event(person, "order_completed", time.Hour, `{"revenue": 25}`)
	attribute(t, s, now, 1) // the new order; the moved one is credited already
	// The reports count the moved conversion once: 2 conversions, 40.
	if err := s.RefreshReports(ctx, now, false); err != nil {
		t.Fatal(err)
	}
	day := now.Truncate(24 * time.Hour)
	tbl, err := s.Report(ctx, report.ByTemplate, report.Period{From: day.AddDate(0, 0, -30), To: day.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Total.Conversions != 2 || tbl.Total.Revenue != 40 || tbl.Total.Converted != 1 {
		t.Errorf("after the merge the reports count %d conversions (%d emails), %v revenue; want 2 (1), 40", tbl.Total.Conversions, tbl.Total.Converted, tbl.Total.Revenue)
	}
	got := conversionsOf(t, s, person)
	if len(got) != 2 {
		t.Fatalf("conversions of the merged person: %+v", got)
	}
	if got[0].MessageID != second || got[0].ContactID != person || got[0].SendID != send || got[0].Template != "cart" || got[0].Sequence != "abandoned-cart" ||
		got[0].Value != 25 || got[0].Reason != "credited to cart (sequence abandoned-cart, step 1): opened 2h before, the only email this contact opened or clicked as a person within 5d" {
		t.Errorf("the order after the merge: %+v", got[0])
	}
	if got[1].MessageID != first || got[1].ContactID != person || got[1].SendID != send || got[1].Template != "cart" || got[1].Value != 15 {
		t.Errorf("the order before the merge: %+v", got[1])
	}
	if c := conversionsOf(t, s, anon); len(c) != 0 {
		t.Errorf("the merged contact keeps %+v", c)
	}

	// A pass that raced a merge credited the order under the anonymous
	// contact after the merge had moved its conversions: the moved event is
	// still not credited again.
	h.contact(11, "consideration")
	h.contact(12, "decision")
	h.event(11, "order_completed", time.Hour, `{"revenue": 7}`)
	attribute(t, s, now, 1)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			`INSERT INTO events (contact_id, message_id, kind, name, properties, context, occurred_at, received_at)
			 SELECT 12, message_id, kind, name, properties, context, occurred_at, received_at FROM events WHERE contact_id = 11`,
			`DELETE FROM events WHERE contact_id = 11`,
			`UPDATE contacts SET merged_into = 12 WHERE id = 11`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	attribute(t, s, now, 0)
	if c := conversionsOf(t, s, 11); len(c) != 1 || c[0].Value != 7 {
		t.Errorf("the raced conversion: %+v", c)
	}
}

// Passes of several processes at once, while orders keep coming: each
// order is credited exactly once, whichever pass takes it.
func TestAttributionPassesAtOnceCreditEachOrderOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	now := clock.Now().UTC().Truncate(time.Second)
	h := &history{t: t, db: pool, now: now}
	const contacts, orders = 20, 5
	for c := int64(1); c <= contacts; c++ {
		h.contact(c, "retention")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var credited int64
	errs := make(chan error, 64)
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := store.New(pool)
			for i := 0; i < 15; i++ {
				n, err := s.AttributeConversions(context.Background(), now)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				credited += n
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < orders; i++ {
		for c := int64(1); c <= contacts; c++ {
			h.event(c, "order_completed", time.Duration(i)*time.Minute, `{"revenue": 1}`)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The orders stored after the last of those passes began.
	n, err := store.New(pool).AttributeConversions(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	credited += n
	var rows int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM conversions`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if credited != contacts*orders || rows != contacts*orders {
		t.Errorf("passes credited %d, %d conversions stored; want %d each", credited, rows, contacts*orders)
	}
}
