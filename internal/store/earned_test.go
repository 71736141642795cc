package store_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/store"
)

// What marketing earned, end to end (issue 21's done-when): a
// hand-computed history of emails, human and machine opens and clicks, a
// client's forged open, orders inside and outside the window, two emails
// competing for one order and an offer's holdout goes through attribution
// and the reports' refresh as `serve` runs them, and every reported figure
// is checked against the hand's.
//
// T is the test's now. Contacts: 1 consideration, 2 awareness, 3 and 4
// decision (no moves: their stage at send time is their stage).
//
//	A c1 welcome (welcome step 1, friendly)  sent T-3d: machine open T-3d+1m, human open T-3d+1h
//	B c2 welcome (welcome step 1, friendly)  sent T-10d: human open T-10d+1h
//	C c3 cart    (cart step 1, empathetic)   sent T-3d: human open T-3d+2h
//	D c3 tips    (welcome step 2, friendly)  sent T-2d: human click T-2d+1h
//	E c4 cart    (cart step 1, empathetic)   sent T-3d: machine click T-3d+5m, an open a client sent (kind track) T-3d+1h
//
// Orders: c1 50 at T-2d → A (opened 23h before); c2 30 at T-2d: B's
// open is 8 days before, outside 5d → none; c3 80 at T-1d: C opened, D
// clicked later → D; c4 20 at T-2d: only machines and a forged open →
// none. Offer surprise: c1 and c3 drawn at T-5d (both ordered within 30
// days after: 50, 80); c4 held out at T-5d (ordered: 20), c2 held out at
// T-1d (its order came before: not counted).
func TestWhatMarketingEarnedEndToEnd(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	ctx := context.Background()
	now := clock.Now().UTC().Truncate(time.Second)
	const day = 24 * time.Hour
	at := func(d time.Duration) time.Time { return now.Add(d) }
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for id, stage := range map[int64]string{1: "consideration", 2: "awareness", 3: "decision", 4: "decision"} {
		exec(`INSERT INTO contacts (id, email, stage, created_at) VALUES ($1, $2, $3, $4)`, id, fmt.Sprintf("c%d@example.com", id), stage, at(-30*day))
	}
	send := func(contact int64, template, sequence string, step int, tone string, sent time.Time) int64 {
		t.Helper()
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO sends (contact_id, sequence, step, template, tone, status, due_at, sent_at, recipient)
			VALUES ($1, $2, $3, $4, $5, 'sent', $6, $6, $7) RETURNING id`, contact, sequence, step, template, tone, sent, fmt.Sprintf("c%d@example.com", contact)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	n := 0
	event := func(contact int64, kind, name string, props string, when time.Time) {
		t.Helper()
		n++
		exec(`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			contact, fmt.Sprintf("e%d", n), kind, name, props, when)
	}
	a := send(1, "welcome", "welcome", 0, "friendly", at(-3*day))
	b := send(2, "welcome", "welcome", 0, "friendly", at(-10*day))
	c := send(3, "cart", "cart", 0, "empathetic", at(-3*day))
	d := send(3, "tips", "welcome", 1, "friendly", at(-2*day))
	e := send(4, "cart", "cart", 0, "empathetic", at(-3*day))
	event(1, "internal", "email_opened", fmt.Sprintf(`{"send_id": %d, "machine": true}`, a), at(-3*day+time.Minute))
	event(1, "internal", "email_opened", fmt.Sprintf(`{"send_id": %d}`, a), at(-3*day+time.Hour))
	event(2, "internal", "email_opened", fmt.Sprintf(`{"send_id": %d}`, b), at(-10*day+time.Hour))
	event(3, "internal", "email_opened", fmt.Sprintf(`{"send_id": %d}`, c), at(-3*day+2*time.Hour))
	event(3, "internal", "email_clicked", fmt.Sprintf(`{"send_id": %d}`, d), at(-2*day+time.Hour))
	event(4, "internal", "email_clicked", fmt.Sprintf(`{"send_id": %d, "machine": true}`, e), at(-3*day+5*time.Minute))
	event(4, "track", "email_opened", fmt.Sprintf(`{"send_id": %d}`, e), at(-3*day+time.Hour))
	event(1, "track", "order_completed", `{"revenue": 50}`, at(-2*day))
	event(2, "track", "order_completed", `{"revenue": 30}`, at(-2*day))
	event(3, "track", "order_completed", `{"revenue": 80}`, at(-day))
	event(4, "track", "order_completed", `{"revenue": 20}`, at(-2*day))
	exec(`INSERT INTO offer_draws (contact_id, offer, drawn, at) VALUES (1, 'surprise', true, $1), (3, 'surprise', true, $1), (4, 'surprise', false, $1), (2, 'surprise', false, $2)`,
		at(-5*day), at(-day))

	// As serve's refresher does it: attribution, then the rollups.
	if n, err := s.AttributeConversions(ctx, now); err != nil || n != 4 {
		t.Fatalf("attribution: %d, %v; want 4 conversions", n, err)
	}
	if err := s.RefreshReports(ctx, now, false); err != nil {
		t.Fatal(err)
	}

	credited := map[int64]string{}
	for _, contact := range []int64{1, 2, 3, 4} {
		cs, err := s.Conversions(ctx, contact)
		if err != nil || len(cs) != 1 {
			t.Fatalf("contact %d: %+v, %v", contact, cs, err)
		}
		credited[contact] = fmt.Sprintf("%d %s", cs[0].SendID, cs[0].Reason)
	}
	none := "0 no email opened or clicked as a person within 5d before it: not credited to an email"
	for contact, want := range map[int64]string{
		1: fmt.Sprintf("%d credited to welcome (sequence welcome, step 1): opened 23h before, the only email this contact opened or clicked as a person within 5d", a),
		2: none,
		3: fmt.Sprintf("%d credited to tips (sequence welcome, step 2): clicked 23h before, the last of 2 emails this contact opened or clicked as a person within 5d", d),
		4: none,
	} {
		if credited[contact] != want {
			t.Errorf("contact %d: %s\nwant %s", contact, credited[contact], want)
		}
	}

	today := now.Truncate(day)
	period := report.Period{From: today.AddDate(0, 0, -15), To: today.AddDate(0, 0, 1)}
	// key: sent opened clicked converted conversions revenue
	line := func(r report.Row) string {
		return fmt.Sprintf("%s: %d %d %d %d %d %.2f", r.Key, r.Sent, r.Opened, r.Clicked, r.Converted, r.Conversions, r.Revenue)
	}
	for by, want := range map[report.Dimension]string{
		// welcome: A and B, both opened by people, A credited 50.
		// cart: C (opened) and E (only a machine's click, a forged open).
		// tips: D clicked, credited 80.
		report.ByTemplate: "cart: 2 1 0 0 0 0.00 | tips: 1 0 1 1 1 80.00 | welcome: 2 2 0 1 1 50.00 | total: 5 3 1 2 2 130.00",
		report.ByTone:     "empathetic: 2 1 0 0 0 0.00 | friendly: 3 2 1 2 2 130.00 | total: 5 3 1 2 2 130.00",
		report.ByStage:    "awareness: 1 1 0 0 0 0.00 | consideration: 1 1 0 1 1 50.00 | decision: 3 1 1 1 1 80.00 | total: 5 3 1 2 2 130.00",
	} {
		tbl, err := s.Report(ctx, by, period)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range tbl.Rows {
			if r.Sent > 0 {
				got = append(got, line(r))
			}
		}
		tot := tbl.Total
		tot.Key = "total"
		got = append(got, line(tot))
		if g := strings.Join(got, " | "); g != want {
			t.Errorf("by %s:\n got  %s\n want %s", by, g, want)
		}
		if by == report.ByTemplate {
			r := tbl.Total.Rates
			if r.Open == nil || *r.Open != 3.0/5 || r.Conversion == nil || *r.Conversion != 2.0/5 || r.RevenuePerEmail == nil || *r.RevenuePerEmail != 26 {
				t.Errorf("total rates: open %v, conversion %v, revenue per recipient %v; want 0.6, 0.4, 26", deref(r.Open), deref(r.Conversion), deref(r.RevenuePerEmail))
			}
		}
	}

	// The surprise: drawn 2, both converted, 130; held out 2, one
	// converted, 20. Conversion rates 1 and 0.5: 0.5 ± 1.96·√(0·1/2 +
	// 0.5·0.5/2) = 0.5 ± 0.6930; revenue per contact 65 and 10 (sample
	// variances 450 and 200): 55 ± 1.96·√(450/2 + 200/2) = 55 ± 35.339.
	hs, err := s.Holdouts(ctx, period)
	if err != nil || len(hs) != 1 {
		t.Fatalf("holdouts: %+v, %v", hs, err)
	}
	h := hs[0]
	if h.Offer != "surprise" || h.Treatment.N != 2 || h.Treatment.Converted != 2 || h.Treatment.Revenue != 130 ||
		h.Control.N != 2 || h.Control.Converted != 1 || h.Control.Revenue != 20 {
		t.Fatalf("holdout: %+v", h)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-3 }
	if h.Rate == nil || !near(h.Rate.Diff, 0.5) || !near(h.Rate.Low, 0.5-0.69296) || !near(h.Rate.High, 0.5+0.69296) {
		t.Errorf("conversion rate difference %+v, want 0.5 in [-0.19296, 1.19296]", h.Rate)
	}
	if h.Revenue == nil || !near(h.Revenue.Diff, 55) || !near(h.Revenue.Low, 55-35.3339) || !near(h.Revenue.High, 55+35.3339) {
		t.Errorf("revenue per contact difference %+v, want 55 in [19.666, 90.334]", h.Revenue)
	}
	if !h.Revenue.Significant() || h.Rate.Significant() {
		t.Errorf("significance: revenue %v (want yes), rate %v (want no)", h.Revenue.Significant(), h.Rate.Significant())
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
