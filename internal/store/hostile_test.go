package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Issue 23: one event whose revenue no float8 holds (1e400, 400 nines; as
// stored before ingestion refused them, or as a string) made every facts
// query with a sum() over it fail — the sweep, event-driven evaluation,
// the dry run and the rollup's build, for every contact. Summing cannot
// fail now, by any of the three ways facts are loaded, and the healthy
// values still count.
func TestSumOverPoisonedEventsCannotFail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	now := clock.Now().Truncate(time.Microsecond)
	nines := strings.Repeat("9", 400)
	poison := []string{
		`{"revenue": 1e400}`, `{"revenue": -1e400}`, `{"revenue": ` + nines + `}`, `{"revenue": "` + nines + `"}`,
		`{"revenue": 1e-400}`, `{"revenue": "0.` + strings.Repeat("0", 400) + `1"}`, `{"revenue": 1.5e308}`,
		`{"revenue": "NaN"}`, `{"revenue": "Infinity"}`, `{"revenue": "-1e400"}`, `{"revenue": "  7  "}`,
	}
	healthy := []string{`{"revenue": 20}`, `{"revenue": "49.90"}`}
	var ids []int64
	for i, props := range [][]string{healthy, append(append([]string(nil), healthy...), poison...)} {
		ids = append(ids, withOrders(t, pool, fmt.Sprint("p", i), now, props...))
	}
	all, err := rule.ParseWindow("all")
	if err != nil {
		t.Fatal(err)
	}
	needs := []rule.Aggregate{
		{Kind: rule.AggSum, Event: "order_completed", Property: "revenue", Window: all},
		{Kind: rule.AggCount, Event: "order_completed", Window: all},
	}
	// From the events table (a sweep without the rollup), then the
	// rollup's build, then from the rollup and by id: all the same.
	for _, f := range allFacts(t, s, needs, now, false) {
		want := 69.9
		if f.ID == ids[1] {
			want += 7 // the string "  7  " is a number; the rest count as nothing
		}
		if got := f.Value(needs[0]); fmt.Sprintf("%.6f", got) != fmt.Sprintf("%.6f", want) {
			t.Errorf("contact %d: sum %v, want %v", f.ID, got, want)
		}
	}
	if _, err := s.FoldActivity(ctx, needs); err != nil {
		t.Fatalf("building the rollup over poisoned events: %v", err)
	}
	compareAt(t, s, needs, "poisoned", now)
}

// withOrders inserts a contact (created two days before now) with an
// order_completed an hour before now for each of props, stored as they
// are (not through ingestion, which refuses some of them now).
func withOrders(t *testing.T, pool *pgxpool.Pool, user string, now time.Time, props ...string) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO contacts (id, user_id, created_at, stage_entered_at)
		VALUES (nextval('contact_id_seq'), $1, $2, $2) RETURNING id`, user, now.Add(-48*time.Hour)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for j, p := range props {
		if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
			VALUES ($1, $2, 'track', 'order_completed', $3, $4)`, id, fmt.Sprint("m", j), p, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// Issue 23: each dry run naming a new sum() or distinct() property rebuilt
// the activity rollup (readers waiting) and its property list only grew.
// A dry run now leaves the rollup as it is (reading the events for a
// property it lacks, with the same answer), and the list is capped.
func TestDryRunNeverRebuildsTheRollup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	now := clock.Now().Truncate(time.Microsecond)
	for i := range 6 {
		withOrders(t, pool, fmt.Sprint("d", i), now, fmt.Sprintf(`{"revenue": %d, "price": %d}`, i*100, i*10))
	}
	rules := func(when string) []lifecycle.Rule {
		p, err := rule.Compile(when, rule.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []lifecycle.Rule{{Name: "r", Version: 1, From: []rule.Stage{"awareness"}, To: "consideration", When: p}}
	}
	engine := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := engine.Sweep(ctx, now); err != nil { // no rules: nothing built
		t.Fatal(err)
	}
	if _, err := s.FoldActivity(ctx, []rule.Aggregate{{Kind: rule.AggSum, Event: "order_completed", Property: "revenue", Window: rule.Window{All: true}}}); err != nil {
		t.Fatal(err)
	}
	state := func() (spec string, built time.Time) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT spec, built_at FROM activity_state`).Scan(&spec, &built); err != nil {
			t.Fatal(err)
		}
		return spec, built
	}
	spec0, built0 := state()
	for i, c := range []struct {
		when  string
		moves int
	}{
		{`sum("order_completed", "price", "all") >= 30`, 3},
		{`distinct("order_completed", "sku", "all") >= 1`, 0},
		{`sum("order_completed", "revenue", "all") >= 200`, 4}, // carried: from the rollup
	} {
		effects, _, err := engine.DryRun(ctx, rules(c.when), now)
		if err != nil {
			t.Fatalf("dry run %d: %v", i, err)
		}
		moved := 0
		for _, e := range effects {
			moved += e.Contacts
		}
		if moved != c.moves {
			t.Errorf("dry run of %s: %d would move, want %d", c.when, moved, c.moves)
		}
		if spec, built := state(); spec != spec0 || !built.Equal(built0) {
			t.Fatalf("dry run of %s changed the rollup: spec %s (was %s), built %v (was %v)", c.when, spec, spec0, built, built0)
		}
	}

	// At most 32 properties: a sweep needing more reads the events; one
	// whose properties with the old ones would be more rebuilds with its
	// own.
	var many []rule.Aggregate
	for i := range 33 {
		many = append(many, rule.Aggregate{Kind: rule.AggSum, Event: "order_completed", Property: fmt.Sprint("p", i), Window: rule.Window{All: true}})
	}
	if _, err := s.FoldActivity(ctx, many); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("33 properties: %v, want refused", err)
	}
	if _, err := s.FoldActivity(ctx, many[1:]); err != nil {
		t.Fatal(err)
	}
	if spec, _ := state(); strings.Contains(spec, `"revenue"`) || !strings.Contains(spec, `"p32"`) {
		t.Fatalf("spec after 32 new properties: %s, want them without the old one", spec)
	}
}

// Merging anonymous contacts into an identified one cannot take its traits
// over the limit either: the anonymous traits are left out then.
func TestMergedTraitsAreCapped(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	big := strings.Repeat("x", 40<<10)
	mustIngest(t, s,
		identify("u-cap", "", "i1", `{"mine": "`+big+`"}`, ""),
		identify("", "a-cap", "i2", `{"theirs": "`+big+`", "plan": "pro"}`, ""))
	mustIngest(t, s, track("u-cap", "a-cap", "t1", "page_viewed", "")) // joins them
	c := contactOf(t, pool, "u:u-cap")
	if _, ok := c.Traits["theirs"]; ok || c.Traits["mine"] != big {
		t.Fatalf("traits after the merge: %d keys, want the identified contact's alone", len(c.Traits))
	}
	if n := count(t, pool, `SELECT count(*) FROM contacts WHERE merged_into = $1`, c.ID); n != 1 {
		t.Fatalf("%d contacts merged, want the anonymous one", n)
	}
}
