package store_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/report/reporttest"
	"github.com/waymark/waymark/internal/store"
)

// reportsT0 is the history's base: a UTC midnight 40 days before the
// test's now, so that every time in it (an order 32 days on) is past.
func reportsT0() time.Time {
	return clock.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -40)
}

// wantByDimension are reporttest's history's figures per dimension over
// its days 0 to 2, worked out by hand from its emails (see its package
// doc): sent, delivered, hard and soft bounces, complaints, human opens
// and clicks, unsubscribes, emails converted, conversions, revenue.
var wantByDimension = map[report.Dimension]map[string]report.Figures{
	report.ByTemplate: {
		"w1": {Sent: 4, Delivered: 1, SoftBounced: 1, Opened: 2, Clicked: 1, Converted: 1, Conversions: 1, Revenue: 50}, // 101 102 109 110
		"w2": {Sent: 1, HardBounced: 1},                                                                                 // 103
		"b1": {Sent: 1, Delivered: 1, Opened: 1, Unsubscribed: 1, Converted: 1, Conversions: 1, Revenue: 30},            // 104
		"b2": {Sent: 1, Delivered: 1, Complained: 1, Opened: 1},                                                         // 105
		"o1": {Sent: 1, Delivered: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},                 // 106
	},
	report.ByStep: {
		"welcome/1":         {Sent: 4, Delivered: 1, SoftBounced: 1, Opened: 2, Clicked: 1, Converted: 1, Conversions: 1, Revenue: 50},
		"welcome/2":         {Sent: 1, HardBounced: 1},
		"offer: surprise/1": {Sent: 1, Delivered: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},
	},
	report.BySequence: {
		"welcome":         {Sent: 5, Delivered: 1, HardBounced: 1, SoftBounced: 1, Opened: 2, Clicked: 1, Converted: 1, Conversions: 1, Revenue: 50},
		"offer: surprise": {Sent: 1, Delivered: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},
	},
	report.ByBroadcast: {
		"launch": {Sent: 2, Delivered: 2, Complained: 1, Opened: 2, Unsubscribed: 1, Converted: 1, Conversions: 1, Revenue: 30},
	},
	report.ByVariant: {
		"launch/1": {Sent: 1, Delivered: 1, Opened: 1, Unsubscribed: 1, Converted: 1, Conversions: 1, Revenue: 30},
		"launch/2": {Sent: 1, Delivered: 1, Complained: 1, Opened: 1},
	},
	report.ByTone: {
		"":      {Sent: 2, Delivered: 2, Complained: 1, Opened: 2, Unsubscribed: 1, Converted: 1, Conversions: 1, Revenue: 30}, // 104 105
		"plain": {Sent: 3, SoftBounced: 1, Opened: 1},                                                                          // 102 109 110
		"warm":  {Sent: 3, Delivered: 2, HardBounced: 1, Opened: 2, Clicked: 2, Converted: 2, Conversions: 3, Revenue: 80},     // 101 103 106
	},
	report.ByStage: {
		"consideration": {Sent: 3, Delivered: 2, Opened: 3, Clicked: 1, Unsubscribed: 1, Converted: 2, Conversions: 2, Revenue: 80}, // 101 104 110
		"awareness":     {Sent: 3, Delivered: 1, SoftBounced: 1, Complained: 1, Opened: 1},                                          // 102 105 109
		"retention":     {Sent: 2, Delivered: 1, HardBounced: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},  // 103 106
	},
	report.ByOffer: {
		"surprise": {Sent: 1, Delivered: 1, Opened: 1, Clicked: 1, Converted: 1, Conversions: 2, Revenue: 30},
	},
}

// wantTotal are the totals of the dimensions that count every email.
var wantTotal = report.Figures{Sent: 8, Delivered: 4, HardBounced: 1, SoftBounced: 1, Complained: 1, Opened: 5, Clicked: 2,
	Unsubscribed: 1, Converted: 3, Conversions: 4, Revenue: 110}

// reportsSnapshot is everything the reports read over a period.
type reportsSnapshot struct {
	Tables   map[report.Dimension]report.Table
	Holdouts []report.Holdout
	ABTests  []report.ABTest
	Stages   []report.Stage
	Days     []report.Day
}

func readReports(t *testing.T, s *store.Store, p report.Period) reportsSnapshot {
	t.Helper()
	ctx := context.Background()
	out := reportsSnapshot{Tables: map[report.Dimension]report.Table{}}
	for _, by := range report.Dimensions {
		tb, err := s.Report(ctx, by, p)
		if err != nil {
			t.Fatalf("report by %s: %v", by, err)
		}
		tb.RefreshedAt = time.Time{}
		out.Tables[by] = tb
	}
	var err error
	if out.Holdouts, err = s.Holdouts(ctx, p); err != nil {
		t.Fatal(err)
	}
	if out.ABTests, err = s.ABTests(ctx, p); err != nil {
		t.Fatal(err)
	}
	if out.Stages, err = s.Stages(ctx, p); err != nil {
		t.Fatal(err)
	}
	if out.Days, err = s.Days(ctx, p); err != nil {
		t.Fatal(err)
	}
	return out
}

// The history written in three phases, refreshed after each (the first
// refresh is a full one, the others incremental), reads exactly the
// figures worked out by hand; a full refresh then reads the same.
func TestReportsFromHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	t0 := reportsT0()
	p := report.Period{From: t0, To: t0.AddDate(0, 0, 3)}
	for i := 0; i < reporttest.Phases; i++ {
		if err := reporttest.Phase(ctx, pool, t0, i); err != nil {
			t.Fatal(err)
		}
		if err := s.RefreshReports(ctx, t0.Add(reporttest.PhaseEnds[i]), false); err != nil {
			t.Fatalf("refresh after phase %d: %v", i, err)
		}
		if i == 0 {
			// After phase A: emails 101, 102 and 106 on day 0, 101's
			// delivery and machine open, 106's delivery, open and one
			// order of two.
			tb, err := s.Report(ctx, report.ByTemplate, p)
			if err != nil {
				t.Fatal(err)
			}
			want := report.Figures{Sent: 3, Delivered: 2, Opened: 1, Converted: 2, Conversions: 2, Revenue: 70}
			if tb.Total.Figures != want {
				t.Errorf("after phase A: total %+v, want %+v", tb.Total.Figures, want)
			}
		}
	}
	incremental := readReports(t, s, p)
	checkHistoryReports(t, incremental, t0)

	if err := s.RefreshReports(ctx, t0.Add(reporttest.PhaseEnds[2]), true); err != nil {
		t.Fatal(err)
	}
	full := readReports(t, s, p)
	if !reflect.DeepEqual(incremental, full) {
		t.Errorf("a full refresh reads otherwise than the incremental ones:\nincremental %+v\nfull        %+v", incremental, full)
	}
	// A refresh with nothing new changes nothing.
	if err := s.RefreshReports(ctx, t0.Add(reporttest.PhaseEnds[2]+time.Minute), false); err != nil {
		t.Fatal(err)
	}
	if again := readReports(t, s, p); !reflect.DeepEqual(again, full) {
		t.Errorf("an empty refresh changed the reports:\nbefore %+v\nafter  %+v", full, again)
	}

	// Erasing contact 1 removes the reports' rows of its emails, draws and
	// moves; the sums keep its figures, as no one's.
	if _, err := s.Erase(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM report_emails WHERE contact_id = 1) + (SELECT count(*) FROM report_draws WHERE contact_id = 1)
		+ (SELECT count(*) FROM report_moves WHERE contact_id = 1)`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d report rows of an erased contact (%v)", left, err)
	}
	if err := s.RefreshReports(ctx, t0.Add(reporttest.PhaseEnds[2]+2*time.Minute), false); err != nil {
		t.Fatal(err)
	}
	if tb, err := s.Report(ctx, report.ByTemplate, p); err != nil || tb.Total.Figures != wantTotal {
		t.Errorf("after an erasure: total %+v (%v), want %+v", tb.Total.Figures, err, wantTotal)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func checkHistoryReports(t *testing.T, got reportsSnapshot, t0 time.Time) {
	t.Helper()
	for by, want := range wantByDimension {
		tb := got.Tables[by]
		rows := map[string]report.Figures{}
		var total report.Figures
		for _, r := range tb.Rows {
			rows[r.Key] = r.Figures
			total.Add(r.Figures)
		}
		if !reflect.DeepEqual(rows, want) {
			t.Errorf("by %s:\n got %+v\nwant %+v", by, rows, want)
		}
		if tb.Total.Figures != total {
			t.Errorf("by %s: total %+v, rows sum to %+v", by, tb.Total.Figures, total)
		}
	}
	for _, by := range []report.Dimension{report.ByTemplate, report.ByTone, report.ByStage} {
		if tot := got.Tables[by].Total.Figures; tot != wantTotal {
			t.Errorf("by %s: total %+v, want %+v", by, tot, wantTotal)
		}
	}
	// Rates of the total: 5 of 8 opened, 2 bounced, 110 / 8 a recipient.
	r := got.Tables[report.ByTemplate].Total.Rates
	if r.Open == nil || *r.Open != 5.0/8 || r.Bounce == nil || *r.Bounce != 2.0/8 || r.RevenuePerEmail == nil || *r.RevenuePerEmail != 110.0/8 ||
		r.Conversion == nil || *r.Conversion != 3.0/8 {
		t.Errorf("total rates %+v", r)
	}
	if l := got.Tables[report.ByVariant].Rows[1].Label; l != "launch, variant 2" {
		t.Errorf("variant label %q", l)
	}

	// The offer: 1 (80 within 30 days of the draw; 100 after) and 3 (30)
	// drawn; 4 (25) and 6 (60 before the draw: nothing) held out.
	if len(got.Holdouts) != 1 {
		t.Fatalf("holdouts %+v", got.Holdouts)
	}
	h := got.Holdouts[0]
	wantT := report.Group{Name: "drawn", N: 2, Converted: 2, Revenue: 110, RevenueSq: 80*80 + 30*30}
	wantC := report.Group{Name: "holdout", N: 2, Converted: 1, Revenue: 25, RevenueSq: 25 * 25}
	if h.Offer != "surprise" || h.Treatment != wantT || h.Control != wantC {
		t.Errorf("holdout %+v, want %+v against %+v", h, wantT, wantC)
	}
	// Rates 1 and 1/2: se = sqrt(0 + 0.25/2); revenue 55 and 12.5 a
	// contact, variances (7300 - 2·55²)/1 = 1250 and (625 - 2·12.5²)/1 = 312.5.
	seRate, seRev := math.Sqrt(0.125), math.Sqrt(1250.0/2+312.5/2)
	if h.Rate == nil || !near(h.Rate.Diff, 0.5) || !near(h.Rate.Low, 0.5-1.959963984540054*seRate) ||
		h.Revenue == nil || !near(h.Revenue.Diff, 42.5) || !near(h.Revenue.High, 42.5+1.959963984540054*seRev) {
		t.Errorf("holdout intervals %+v %+v", h.Rate, h.Revenue)
	}

	// The A/B test: variant 1 (104: opened, converted 30), variant 2
	// (105: opened), variant 2 won.
	if len(got.ABTests) != 1 {
		t.Fatalf("A/B tests %+v", got.ABTests)
	}
	ab := got.ABTests[0]
	wantV := []report.Variant{
		{Index: 0, Label: "variant 1 (template b1)", Sent: 1, Opened: 1, Converted: 1, Revenue: 30, RevenueSq: 900},
		{Index: 1, Label: "variant 2 (template b2)", Sent: 1, Opened: 1},
	}
	if ab.Broadcast != "launch" || ab.Run != 7 || ab.PickBy != "opens" || !ab.Decided || ab.Winner != 1 || ab.Reason != "variant 2 opened most" ||
		!reflect.DeepEqual(ab.Variants, wantV) {
		t.Errorf("A/B test %+v, variants want %+v", ab, wantV)
	}
	if ab.Margin == nil || ab.Margin.Treatment.N != 1 || ab.Margin.Treatment.Converted != 1 || ab.Margin.Control.Revenue != 30 || ab.Margin.Rate != nil {
		t.Errorf("margin %+v (winner 2 against 1, one email each: no interval)", ab.Margin)
	}

	// Stages over days 0-2: moves awareness→consideration of 5 (stayed
	// 12h since created) and 7 (30d2h), consideration→decision of 1
	// (11d6h since T0-10d), retention→consideration of 3 (back); 5
	// created on day 0.
	dur := func(d time.Duration) *time.Duration { return &d }
	share := func(f float64) *float64 { return &f }
	day := 24 * time.Hour
	wantS := []report.Stage{
		{Stage: "awareness", Contacts: 3, Entered: 1, Conversions: 2, Revenue: 65, MovedOn: 2,
			MedianToNext: dur((12*time.Hour + 30*day + 2*time.Hour) / 2), RegressedShare: share(0)},
		{Stage: "consideration", Contacts: 3, Entered: 3, Conversions: 2, Revenue: 80, MovedOn: 1,
			MedianToNext: dur(11*day + 6*time.Hour), RegressedShare: share(0)},
		{Stage: "decision", Contacts: 1, Entered: 1},
		{Stage: "retention", Conversions: 2, Revenue: 30, Regressed: 1, RegressedShare: share(1)},
		{Stage: "advocacy"},
	}
	if !reflect.DeepEqual(got.Stages, wantS) {
		t.Errorf("stages\n got %s\nwant %s", stagesString(got.Stages), stagesString(wantS))
	}

	// Days: day 0 orders 50 (101), 20 and 10 (106), 25 (none); day 1 30
	// (104), 40 (none).
	wantD := []report.Day{
		{Day: t0, Conversions: 4, Revenue: 105, Attributed: 3, AttributedRevenue: 80},
		{Day: t0.Add(day), Conversions: 2, Revenue: 70, Attributed: 1, AttributedRevenue: 30},
	}
	if len(got.Days) != 2 {
		t.Fatalf("days %+v", got.Days)
	}
	for i, d := range got.Days {
		if !d.Day.Equal(wantD[i].Day) || d.Conversions != wantD[i].Conversions || d.Revenue != wantD[i].Revenue ||
			d.Attributed != wantD[i].Attributed || d.AttributedRevenue != wantD[i].AttributedRevenue {
			t.Errorf("day %d: %+v, want %+v", i, d, wantD[i])
		}
	}
}

func stagesString(ss []report.Stage) string {
	out := ""
	for _, s := range ss {
		med, sh := "nil", "nil"
		if s.MedianToNext != nil {
			med = s.MedianToNext.String()
		}
		if s.RegressedShare != nil {
			sh = fmt.Sprint(*s.RegressedShare)
		}
		out += fmt.Sprintf("\n  %s contacts %d entered %d conversions %d revenue %v moved on %d regressed %d median %s share %s",
			s.Stage, s.Contacts, s.Entered, s.Conversions, s.Revenue, s.MovedOn, s.Regressed, med, sh)
	}
	return out
}

// The median stay before a move forward is exact: the mean of the two
// middle stays for an even count, the middle one for an odd, across the
// buckets the rollup counts stays in; moves back do not count in it.
func TestReportStageMedians(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	t0 := reportsT0()
	moved := t0.Add(time.Hour)
	awareness := []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour, 10 * time.Hour, 100 * time.Hour, 1000 * time.Hour}
	for i, stay := range awareness {
		id := i + 1
		if _, err := tx.Exec(ctx, `INSERT INTO contacts (id, email, created_at) VALUES ($1, $2, $3)`, id, fmt.Sprintf("m%d@example.com", id), moved.Add(-stay)); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at)
			VALUES ($1, 'awareness', 'consideration', 'r', 1, '{}', 'sweep', $2)`, id, moved); err != nil {
			t.Fatal(err)
		}
	}
	for id, next := range map[int][2]any{1: {"decision", 5 * time.Minute}, 2: {"decision", 6 * time.Minute}, 3: {"decision", 7 * time.Minute}, 4: {"awareness", time.Minute}} {
		if _, err := tx.Exec(ctx, `INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at)
			VALUES ($1, 'consideration', $2, 'r', 1, '{}', 'sweep', $3)`, id, next[0], moved.Add(next[1].(time.Duration))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RefreshReports(ctx, t0.AddDate(0, 0, 2), false); err != nil {
		t.Fatal(err)
	}
	dur := func(d time.Duration) *time.Duration { return &d }
	share := func(f float64) *float64 { return &f }
	// Contacts 1 to 3 are in decision, 4 back in awareness, 5 and 6 in
	// consideration; 1 was created on the day (its stay was an hour).
	want := []report.Stage{
		{Stage: "awareness", Contacts: 1, Entered: 2, MovedOn: 6, MedianToNext: dur((3*time.Hour + 10*time.Hour) / 2), RegressedShare: share(0)},
		{Stage: "consideration", Contacts: 2, Entered: 6, MovedOn: 3, Regressed: 1, MedianToNext: dur(6 * time.Minute), RegressedShare: share(0.25)},
		{Stage: "decision", Contacts: 3, Entered: 3},
		{Stage: "retention"},
		{Stage: "advocacy"},
	}
	if _, err := tx.Exec(ctx, `UPDATE contacts SET stage = CASE WHEN id <= 3 THEN 'decision' WHEN id = 4 THEN 'awareness' ELSE 'consideration' END`); err != nil {
		t.Fatal(err)
	}
	stages, err := s.Stages(ctx, report.Period{From: t0, To: t0.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stages, want) {
		t.Errorf("stages\n got %s\nwant %s", stagesString(stages), stagesString(want))
	}
}

// An email stamped long before the last refresh but committed after it
// (on the demo's fast clock, milliseconds are hours) is counted by the
// next refresh: it looks again as far back as the refresh before the
// last.
func TestReportsCountEmailsCommittedLate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	t0 := reportsT0()
	if _, err := pool.Exec(ctx, `INSERT INTO contacts (id, email, created_at) VALUES (1, 'a@example.com', $1)`, t0); err != nil {
		t.Fatal(err)
	}
	send := func(id int, at time.Time) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO sends (contact_id, id, step, template, status, due_at, sent_at) OVERRIDING SYSTEM VALUE
			VALUES (1, $1, 0, 'news', 'sent', $2, $2)`, id, at); err != nil {
			t.Fatal(err)
		}
	}
	sent := func() int64 {
		t.Helper()
		tb, err := s.Report(ctx, report.ByTemplate, report.Period{From: t0, To: t0.AddDate(0, 0, 3)})
		if err != nil {
			t.Fatal(err)
		}
		return tb.Total.Sent
	}
	send(1, t0.Add(time.Hour))
	for i, at := range []time.Duration{2 * time.Hour, 24 * time.Hour} {
		if err := s.RefreshReports(ctx, t0.Add(at), false); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	// Stamped at 3h, committed after the refresh at 24h.
	send(2, t0.Add(3*time.Hour))
	if err := s.RefreshReports(ctx, t0.Add(25*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if n := sent(); n != 2 {
		t.Errorf("%d emails counted, want 2", n)
	}
}

// Refreshes running at once (the dashboard's refresher, `waymark report`)
// take turns: each event, conversion and email counts once.
func TestConcurrentReportRefreshesCountOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	t0 := reportsT0()
	for i := 0; i < reporttest.Phases; i++ {
		if err := reporttest.Phase(ctx, pool, t0, i); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 4)
		for k := 0; k < 4; k++ {
			go func() { errs <- s.RefreshReports(ctx, t0.Add(reporttest.PhaseEnds[i]), false) }()
		}
		for k := 0; k < 4; k++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	tb, err := s.Report(ctx, report.ByTemplate, report.Period{From: t0, To: t0.AddDate(0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if tb.Total.Figures != wantTotal {
		t.Errorf("total %+v, want %+v", tb.Total.Figures, wantTotal)
	}
}
