package store_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// rollupNeeds are aggregates of every kind over windows from minutes to
// all history, and one enrolment window (nothing, outside a sequence).
func rollupNeeds(t *testing.T) []rule.Aggregate {
	t.Helper()
	w := func(s string) rule.Window {
		x, err := rule.ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	return []rule.Aggregate{
		{Kind: rule.AggCount, Event: "page_viewed", Window: w("14d")},
		{Kind: rule.AggCount, Event: "page_viewed", Window: w("30m")},
		{Kind: rule.AggCount, Event: "page_viewed", Window: w("all")},
		{Kind: rule.AggCount, Event: "order_completed", Window: w("12h")},
		{Kind: rule.AggCount, Event: "order_completed", Window: w("enrolment")},
		{Kind: rule.AggSum, Event: "order_completed", Property: "revenue", Window: w("7d")},
		{Kind: rule.AggSum, Event: "order_completed", Property: "revenue", Window: w("all")},
		{Kind: rule.AggDistinct, Event: "product_viewed", Property: "product_id", Window: w("30d")},
		{Kind: rule.AggDistinct, Event: "order_completed", Property: "sku", Window: w("1y")},
		{Kind: rule.AggDaysSince, Event: "page_viewed"},
		{Kind: rule.AggDaysSince, Event: "order_completed"},
		{Kind: rule.AggEver, Event: "cart_updated"},
		{Kind: rule.AggEver, Event: "never_seen"},
		// Machine opens and clicks, by either way of flagging them.
		{Kind: rule.AggCount, Event: "email_opened", Window: w("14d")},
		{Kind: rule.AggCount, Event: "email_opened_machine", Window: w("all")},
		{Kind: rule.AggDistinct, Event: "email_opened_machine", Property: "campaign", Window: w("30d")},
		{Kind: rule.AggDaysSince, Event: "email_clicked"},
		{Kind: rule.AggEver, Event: "email_clicked_machine"},
		{Kind: rule.AggSum, Event: "email_clicked", Property: "n", Window: w("all")},
	}
}

// randomEvent returns an event name, properties and time for a history
// ending around base: many exactly on, or a microsecond either side of,
// the edges of the windows at the instants compared.
func randomEvent(r *rand.Rand, base time.Time, edges []time.Duration) (string, string, time.Time) {
	names := []string{"page_viewed", "order_completed", "product_viewed", "cart_updated", "email_opened", "email_clicked", "email_opened_machine", "email_clicked_machine"}
	name := names[r.IntN(len(names))]
	var at time.Time
	switch r.IntN(3) {
	case 0:
		at = base.Add(-time.Duration(r.Int64N(int64(400 * 24 * time.Hour))))
	default:
		at = base.Add(-edges[r.IntN(len(edges))]).Add(time.Duration(r.IntN(3)-1) * time.Microsecond)
	}
	var props string
	switch name {
	case "order_completed":
		revenue := []string{`12.5`, `"49.90"`, `"abc"`, `null`, `7`, `-3.25`}[r.IntN(6)]
		sku := []string{`"A"`, `"B"`, `1`, `1.0`, `null`, `{"x": 1}`}[r.IntN(6)]
		if r.IntN(5) == 0 {
			props = `{"sku": ` + sku + `}`
		} else {
			props = `{"revenue": ` + revenue + `, "sku": ` + sku + `}`
		}
	case "product_viewed":
		props = fmt.Sprintf(`{"product_id": %s}`, []string{`"p-1"`, `"p-2"`, `3`, `3.00`, `"p-3"`}[r.IntN(5)])
		if r.IntN(6) == 0 {
			props = `{}`
		}
	case "email_opened", "email_clicked", "email_opened_machine", "email_clicked_machine":
		// Flagged as a machine's (only a JSON true counts), or not.
		machine := []string{``, `"machine": true, `, `"machine": false, `, `"machine": "true", `}[r.IntN(4)]
		props = `{` + machine + `"campaign": ` + []string{`"welcome"`, `"sale"`, `7`}[r.IntN(3)] + `, "n": ` + []string{`1`, `2.5`, `"x"`}[r.IntN(3)] + `}`
	default:
		props = `{}`
	}
	return name, props, at
}

// allFacts loads every contact's facts a page at a time, from the rollup
// or from the events.
func allFacts(t *testing.T, s *store.Store, needs []rule.Aggregate, asOf time.Time, rollup bool) []lifecycle.ContactFacts {
	t.Helper()
	var out []lifecycle.ContactFacts
	var after int64
	for {
		page, err := s.LoadFacts(context.Background(), lifecycle.FactsQuery{After: after, Limit: 7, AsOf: asOf, Needs: needs, Rollup: rollup})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 7 {
			return out
		}
		after = page[len(page)-1].ID
	}
}

// sameFacts fails unless the rollup's facts are the events'.
func sameFacts(t *testing.T, what string, want, got []lifecycle.ContactFacts) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d contacts from the rollup, %d from events", what, len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.ID != g.ID || w.Stage != g.Stage || !w.StageEnteredAt.Equal(g.StageEnteredAt) || w.Email != g.Email {
			t.Fatalf("%s: contact %d: rollup %+v, events %+v", what, i, g.Facts, w.Facts)
		}
		gm := g.ValuesMap()
		for a, wv := range w.Values {
			gv, ok := gm[a]
			if !ok || !(gv == wv || math.Abs(gv-wv) <= 1e-9*math.Max(1, math.Abs(wv))) {
				t.Fatalf("%s: contact %d: %s = %v from the rollup, %v from events", what, w.ID, a, gv, wv)
			}
		}
		if len(gm) != len(w.Values) {
			t.Fatalf("%s: contact %d: %d values from the rollup, %d from events", what, w.ID, len(gm), len(w.Values))
		}
	}
}

// compareAt compares, at each instant, the rollup's facts and those of
// contacts loaded by id (the records of their events, aggregated in Go)
// with the events query's.
func compareAt(t *testing.T, s *store.Store, needs []rule.Aggregate, what string, instants ...time.Time) {
	t.Helper()
	for _, at := range instants {
		want := allFacts(t, s, needs, at, false)
		sameFacts(t, fmt.Sprintf("%s, as of %s", what, at.Format(time.RFC3339Nano)), want, allFacts(t, s, needs, at, true))
		var ids []int64
		for _, f := range want {
			ids = append(ids, f.ID)
		}
		byID, err := s.LoadFacts(context.Background(), lifecycle.FactsQuery{IDs: ids, AsOf: at, Needs: needs})
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(byID, func(a, b lifecycle.ContactFacts) int { return cmp.Compare(a.ID, b.ID) })
		sameFacts(t, fmt.Sprintf("%s, by id, as of %s", what, at.Format(time.RFC3339Nano)), want, byID)
		compact, err := s.LoadFacts(context.Background(), lifecycle.FactsQuery{IDs: ids, AsOf: at, Needs: needs, Compact: true})
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(compact, func(a, b lifecycle.ContactFacts) int { return cmp.Compare(a.ID, b.ID) })
		for _, f := range compact {
			if f.Values != nil || len(f.Nums) != len(needs) {
				t.Fatalf("%s: compact facts of contact %d: %d values in the map, %d numbers", what, f.ID, len(f.Values), len(f.Nums))
			}
		}
		sameFacts(t, fmt.Sprintf("%s, by id, compact, as of %s", what, at.Format(time.RFC3339Nano)), want, compact)

		// Event-driven evaluation loads only the names its needs count:
		// a machine's opens and clicks are told apart from people's when
		// only one of the two is read. And the contacts touched get what
		// touched them, by their place in the list.
		for _, machine := range []bool{false, true} {
			var sub []rule.Aggregate
			for _, a := range needs {
				if strings.HasSuffix(a.Event, "_machine") == machine {
					sub = append(sub, a)
				}
			}
			touched := make([]lifecycle.Touched, len(ids))
			for i, id := range ids {
				touched[i] = lifecycle.Touched{ID: id, Names: []string{fmt.Sprint("n", id)}, Stages: 1<<len(rule.Stages) - 1}
			}
			got, err := s.LoadFacts(context.Background(), lifecycle.FactsQuery{IDs: ids, Touched: touched, AsOf: at, Needs: sub, Compact: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range got {
				if len(f.NewEvents) != 1 || f.NewEvents[0] != fmt.Sprint("n", f.ID) {
					t.Fatalf("%s: contact %d loaded with the new events %v", what, f.ID, f.NewEvents)
				}
			}
			sameFacts(t, fmt.Sprintf("%s, touched, machine names %v, as of %s", what, machine, at.Format(time.RFC3339Nano)), allFacts(t, s, sub, at, false), got)
		}
	}
}

// The rollup answers every aggregate exactly as the events table does, for
// random histories with events on the window edges (to the microsecond),
// late events, merges, events of a transaction still running at a fold,
// a property the rollup did not carry yet, and erasure.
func TestRollupEqualsEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	needs := rollupNeeds(t)
	r := rand.New(rand.NewPCG(3, 4))
	base := clock.Now().Add(-time.Hour).Truncate(time.Microsecond)
	instants := []time.Time{base, base.Add(-36 * time.Hour).Add(7 * time.Microsecond), base.Add(-20 * 24 * time.Hour)}
	var edges []time.Duration
	for _, at := range instants {
		for _, a := range needs {
			if a.Window.Dur > 0 {
				edges = append(edges, base.Sub(at)+a.Window.Dur)
			}
		}
		edges = append(edges, base.Sub(at))
	}

	const contacts = 40
	ids := make([]int64, contacts)
	for i := range ids {
		err := pool.QueryRow(ctx, `INSERT INTO contacts (id, user_id, created_at, stage_entered_at)
			VALUES (nextval('contact_id_seq'), $1, $2, $2) RETURNING id`, fmt.Sprintf("r%d", i), base.Add(-800*24*time.Hour)).Scan(&ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO identities (identity, contact_id) VALUES ($1, $2)`, fmt.Sprintf("u:r%d", i), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	seq := 0
	insert := func(pool *pgxpool.Pool, n int) {
		t.Helper()
		for k := 0; k < n; k++ {
			name, props, at := randomEvent(r, base, edges)
			seq++
			if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', $3, $4, $5)`,
				ids[r.IntN(len(ids)-3)], fmt.Sprintf("m%d", seq), name, props, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(pool, 600)

	// Before the first fold the rollup cannot serve: the events do.
	compareAt(t, s, needs, "never folded", base)

	st, err := s.FoldActivity(ctx, needs)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rebuilt || st.Contacts == 0 {
		t.Fatalf("first fold: %+v, want a build", st)
	}
	compareAt(t, s, needs, "built", instants...)

	// Late and out-of-order events, folded incrementally.
	insert(pool, 300)
	st, err = s.FoldActivity(ctx, needs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rebuilt || st.Contacts == 0 {
		t.Fatalf("second fold: %+v, want an incremental fold", st)
	}
	compareAt(t, s, needs, "folded", instants...)

	// An event stored by a transaction still running at a fold is folded
	// by the next one, exactly once.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late := ids[len(ids)-1]
	if _, err := tx.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, 'inflight', 'track', 'page_viewed', '{}', $2)`, late, base.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	insert(pool, 50)
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pv := rule.Aggregate{Kind: rule.AggCount, Event: "page_viewed", Window: rule.Window{All: true}}
	countOf := func(rollup bool) float64 {
		for _, f := range allFacts(t, s, needs, base, rollup) {
			if f.ID == late {
				return f.Values[pv]
			}
		}
		t.Fatalf("contact %d not found", late)
		return 0
	}
	if got, want := countOf(true), countOf(false); got != want-1 || want != 1 {
		t.Fatalf("in-flight event: rollup %v, events %v; want the rollup one behind until the next fold", got, want)
	}
	for i := 0; i < 2; i++ { // the second fold must not take it again
		if _, err := s.FoldActivity(ctx, needs); err != nil {
			t.Fatal(err)
		}
		compareAt(t, s, needs, "after the in-flight event", base)
	}

	// A merge: an anonymous visitor's events join the identified contact.
	anon := func(msgID, name string, at time.Time) ingest.Message {
		return ingest.Message{Kind: ingest.KindTrack, AnonymousID: "anon-1", MessageID: msgID, Name: name, Properties: json.RawMessage(`{"product_id": "p-9"}`), Timestamp: at}
	}
	if _, err := s.Ingest(ctx, []ingest.Message{anon("a1", "product_viewed", base.Add(-2*time.Hour)), anon("a2", "page_viewed", base.Add(-10*time.Minute))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatal(err)
	}
	compareAt(t, s, needs, "anonymous visitor", base)
	_, err = s.Ingest(ctx, []ingest.Message{{Kind: ingest.KindIdentify, UserID: "r3", AnonymousID: "anon-1", MessageID: "i1", Name: "identify",
		Properties: json.RawMessage(`{}`), Traits: json.RawMessage(`{}`), Timestamp: base.Add(-time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	var merged int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM contacts WHERE anonymous_id = 'anon-1' AND merged_into = $1`, ids[3]).Scan(&merged); err != nil || merged != 1 {
		t.Fatalf("the anonymous contact was not merged into r3 (%d, %v)", merged, err)
	}
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatal(err)
	}
	compareAt(t, s, needs, "merged", instants...)

	// A property the rollup does not carry yet: rebuilt, still exact.
	more := append(append([]rule.Aggregate(nil), needs...),
		rule.Aggregate{Kind: rule.AggSum, Event: "product_viewed", Property: "product_id", Window: rule.Window{All: true}})
	st, err = s.FoldActivity(ctx, more)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rebuilt {
		t.Fatalf("a new property: %+v, want a rebuild", st)
	}
	compareAt(t, s, more, "rebuilt for a new property", instants...)
	// The old rules, still served without another rebuild.
	if st, err = s.FoldActivity(ctx, needs); err != nil || st.Rebuilt {
		t.Fatalf("old rules after a rebuild: %+v, %v; want an incremental fold", st, err)
	}

	// Erasure removes the contact's rollup row with everything else.
	if _, err := s.Erase(ctx, ids[5]); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM activity WHERE contact_id = $1`, ids[5]).Scan(&left); err != nil || left != 0 {
		t.Fatalf("erased contact: %d rollup rows left (%v)", left, err)
	}
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatal(err)
	}
	compareAt(t, s, needs, "erased", instants...)
}

// Opens and clicks flagged as a machine's are left out of the people's
// names and counted under the _machine names, however they were flagged:
// stored under the _machine name by tracking, or an email_opened carrying
// "machine": true (imported from another tool). Both the events query and
// the rollup say so.
func TestMachineOpensLeftOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	at := clock.Now().Add(-time.Hour)
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO contacts (id, user_id, created_at, stage_entered_at) VALUES (nextval('contact_id_seq'), 'm1', $1, $1) RETURNING id`, at.Add(-time.Hour)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for i, ev := range []struct{ name, props string }{
		{"email_opened", `{"campaign": "a"}`},                                    // a person
		{"email_opened", `{"campaign": "b", "machine": false}`},                  // a person
		{"email_opened", `{"campaign": "c", "machine": true}`},                   // imported, flagged
		{"email_opened_machine", `{"campaign": "d", "machine": true}`},           // tracking's
		{"email_clicked", `{"machine": true, "machine_reason": "Safe Links"}`},   // imported, flagged
		{"email_clicked", `{"machine": "yes"}`},                                  // not a JSON true: a person
		{"email_clicked_machine", `{"machine": true, "machine_reason": "HEAD"}`}, // tracking's
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, $2, 'track', $3, $4, $5)`,
			id, fmt.Sprintf("m%d", i), ev.name, ev.props, at.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	all := rule.Window{All: true}
	needs := []rule.Aggregate{
		{Kind: rule.AggCount, Event: "email_opened", Window: all},
		{Kind: rule.AggCount, Event: "email_opened_machine", Window: all},
		{Kind: rule.AggDistinct, Event: "email_opened", Property: "campaign", Window: all},
		{Kind: rule.AggDistinct, Event: "email_opened_machine", Property: "campaign", Window: all},
		{Kind: rule.AggCount, Event: "email_clicked", Window: all},
		{Kind: rule.AggCount, Event: "email_clicked_machine", Window: all},
	}
	want := []float64{2, 2, 2, 2, 1, 2}
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatal(err)
	}
	for _, rollup := range []bool{false, true} {
		var fs []lifecycle.ContactFacts
		var err error
		if rollup {
			fs, err = s.LoadFacts(ctx, lifecycle.FactsQuery{Limit: 10, AsOf: clock.Now(), Needs: needs, Rollup: true})
		} else {
			fs, err = s.LoadFacts(ctx, lifecycle.FactsQuery{IDs: []int64{id}, AsOf: clock.Now(), Needs: needs})
		}
		if err != nil || len(fs) != 1 {
			t.Fatalf("rollup %v: %d contacts, %v", rollup, len(fs), err)
		}
		for i, a := range needs {
			if got := fs[0].Value(a); got != want[i] {
				t.Errorf("rollup %v: %s = %v, want %v", rollup, a, got, want[i])
			}
		}
	}
}

// Contacts loaded by id when nothing reads an aggregate (no rules, only a
// campaigns hook): their state, and no values.
func TestFactsByIDWithoutNeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO contacts (id, user_id, email, stage) VALUES (nextval('contact_id_seq'), 'n1', 'n1@example.com', 'decision') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at) VALUES ($1, 'n1-1', 'track', 'page_viewed', '{}', $2)`, id, clock.Now()); err != nil {
		t.Fatal(err)
	}
	fs, err := s.LoadFacts(ctx, lifecycle.FactsQuery{IDs: []int64{id, id + 1000}, AsOf: clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].ID != id || fs[0].Stage != rule.Decision || fs[0].Email != "n1@example.com" || len(fs[0].Values) != 0 {
		t.Fatalf("facts without needs: %+v, want contact %d in decision with no values", fs, id)
	}
}
