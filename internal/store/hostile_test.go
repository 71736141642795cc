package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
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
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO contacts (id, user_id, created_at, stage_entered_at)
			VALUES (nextval('contact_id_seq'), $1, $2, $2) RETURNING id`, fmt.Sprint("p", i), now.Add(-48*time.Hour)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		for j, p := range props {
			if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
				VALUES ($1, $2, 'track', 'order_completed', $3, $4)`, id, fmt.Sprint("m", j), p, now.Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := lifecycle.ParseWindow("all")
	if err != nil {
		t.Fatal(err)
	}
	needs := []lifecycle.Aggregate{
		{Kind: lifecycle.AggSum, Event: "order_completed", Property: "revenue", Window: all},
		{Kind: lifecycle.AggCount, Event: "order_completed", Window: all},
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
