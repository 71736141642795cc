package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

const ladder = `rules:
  - {name: visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "all") >= 1'}
  - {name: shopper, from: [consideration], to: decision, when: 'ever("cart_updated")'}
  - {name: buyer, from: [decision], to: retention, when: 'sum("order_completed", "revenue", "all") > 0'}
  - {name: fan, from: [retention], to: advocacy, when: 'distinct("order_completed", "sku", "all") >= 2'}
`

func applyJourney(t *testing.T, s *store.Store, src string) *journey.Journey {
	t.Helper()
	j, err := journey.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyJourney(context.Background(), j, false); err != nil {
		t.Fatal(err)
	}
	return j
}

// Two evaluators sweeping the same contacts at once: every contact settles
// once, its hops recorded once and in order.
func TestConcurrentSweepsApplyEachMoveOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	applyJourney(t, s, ladder)
	var msgs []ingest.Message
	for i := 0; i < 300; i++ {
		u := fmt.Sprintf("c%d", i)
		msgs = append(msgs,
			track(u, "", u+"-1", "page_viewed", ""),
			track(u, "", u+"-2", "cart_updated", ""),
			track(u, "", u+"-3", "order_completed", `{"revenue": 10, "sku": "A"}`),
			track(u, "", u+"-4", "order_completed", `{"revenue": "5.50", "sku": "B"}`))
	}
	mustIngest(t, s, msgs...)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	var wg sync.WaitGroup
	stats := make([]lifecycle.SweepStats, 4)
	for i := range stats {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := lifecycle.NewEngine(store.New(pool), log)
			e.BatchSize, e.SweepBatchSize = 50, 50
			var err error
			stats[i], err = e.Sweep(context.Background(), now)
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	moved := 0
	for _, st := range stats {
		moved += st.Moved
	}
	if moved != 300 {
		t.Fatalf("%d contacts moved across 4 sweeps, want each of 300 once", moved)
	}
	if n := count(t, pool, "SELECT count(*) FROM transitions"); n != 1200 {
		t.Fatalf("%d transitions, want 4 hops × 300", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM contacts WHERE stage = 'advocacy'"); n != 300 {
		t.Fatalf("%d in advocacy, want 300", n)
	}
	// Each contact's hops form one unbroken chain.
	if n := count(t, pool, `SELECT count(*) FROM (
		SELECT from_stage, lag(to_stage) OVER (PARTITION BY contact_id ORDER BY seq) AS prev FROM transitions) x
		WHERE prev IS NOT NULL AND prev <> from_stage`); n != 0 {
		t.Fatalf("%d hops do not continue from the previous one", n)
	}
	// The values the rule saw are recorded: the string revenue counts.
	if n := count(t, pool, `SELECT count(*) FROM transitions WHERE rule = 'buyer' AND (observed->>'sum("order_completed", "revenue", "all")')::float = 15.5`); n != 300 {
		t.Fatalf("%d buyer moves saw revenue 15.5, want 300", n)
	}
}

// Backtesting at a past instant ignores later events, and windows count
// back from that instant.
func TestSweepAsOf(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	s := store.New(tx)
	applyJourney(t, s, `rules:
  - {name: recent-visitor, from: [awareness], to: consideration, when: 'count("page_viewed", "7d") >= 2'}
`)
	at := func(d int) time.Time { return time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC) }
	m := func(user, id string, ts time.Time) ingest.Message {
		x := track(user, "", id, "page_viewed", "")
		x.Timestamp = ts
		return x
	}
	mustIngest(t, s,
		m("a", "1", at(1)), m("a", "2", at(3)), // two visits early in March
		m("b", "3", at(1)), m("b", "4", at(20)), // spread out
	)
	e := lifecycle.NewEngine(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// On the 5th, a has 2 visits in the last 7 days; b has 1 (its second
	// visit has not happened yet).
	st, err := e.Sweep(context.Background(), at(5))
	if err != nil {
		t.Fatal(err)
	}
	if st.Contacts != 2 || st.Moved != 1 {
		t.Fatalf("as of the 5th: %+v, want 2 contacts evaluated and 1 moved", st)
	}
	if c := contactOf(t, tx, "u:a"); c.ID == 0 {
		t.Fatal("no contact a")
	}
	var stage string
	_ = tx.QueryRow(context.Background(), `SELECT c.stage FROM contacts c JOIN identities i ON i.contact_id = c.id WHERE i.identity = 'u:a'`).Scan(&stage)
	if stage != "consideration" {
		t.Fatalf("a is in %s", stage)
	}
	_ = tx.QueryRow(context.Background(), `SELECT at FROM transitions`).Scan(new(time.Time))
}
