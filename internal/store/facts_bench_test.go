package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// BenchmarkSweepPage loads the facts of every contact a page at a time, as
// a sweep does: from the activity rollup (the sweep's way), and from the
// events table (a sweep the rollup cannot serve). It reports the cost per
// contact, which reading the rows (scanned by position, into variables
// reused for every row) is part of.
//
//	go test -run '^$' -bench SweepPage ./internal/store/
func BenchmarkSweepPage(b *testing.B) {
	for _, n := range []int{10_000, 50_000} {
		b.Run(fmt.Sprintf("contacts=%d", n), func(b *testing.B) {
			ctx := context.Background()
			pool := pgtest.Pool(b)
			now := time.Now().UTC().Truncate(time.Microsecond)
			for _, q := range []string{
				`INSERT INTO contacts (id, user_id, email, traits, created_at, stage_entered_at)
				 SELECT i, 'u' || i, 'u' || i || '@example.com', jsonb_build_object('plan', 'pro', 'n', i), $2::timestamptz - interval '400 days', $2::timestamptz - interval '400 days'
				 FROM generate_series(1, $1) i`,
				`INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
				 SELECT i, 'm' || i || '-' || k, 'track', CASE WHEN k % 3 = 0 THEN 'order_completed' ELSE 'page_viewed' END,
				        jsonb_build_object('revenue', k * 10), $2::timestamptz - (k * interval '9 days')
				 FROM generate_series(1, $1) i, generate_series(1, 6) k`,
			} {
				if _, err := pool.Exec(ctx, q, n, now); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := pool.Exec(ctx, `VACUUM ANALYZE contacts, events`); err != nil {
				b.Fatal(err)
			}
			all := rule.Window{All: true}
			week, month := rule.Window{Dur: 7 * 24 * time.Hour}, rule.Window{Dur: 30 * 24 * time.Hour}
			needs := []rule.Aggregate{
				{Kind: rule.AggCount, Event: "page_viewed", Window: month},
				{Kind: rule.AggCount, Event: "order_completed", Window: all},
				{Kind: rule.AggSum, Event: "order_completed", Property: "revenue", Window: all},
				{Kind: rule.AggCount, Event: "order_completed", Window: week},
				{Kind: rule.AggDaysSince, Event: "order_completed"},
			}
			st := store.New(pool)
			if _, err := st.FoldActivity(ctx, needs); err != nil {
				b.Fatal(err)
			}
			for _, from := range []string{"rollup", "events"} {
				b.Run("from="+from, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						var after int64
						seen := 0
						for {
							page, err := st.LoadFacts(ctx, lifecycle.FactsQuery{After: after, Limit: 1000, AsOf: now, Needs: needs, Rollup: from == "rollup", Compact: true})
							if err != nil {
								b.Fatal(err)
							}
							if len(page) == 0 {
								break
							}
							seen += len(page)
							after = page[len(page)-1].ID
						}
						if seen != n {
							b.Fatalf("%d contacts loaded, want %d", seen, n)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/contact")
				})
			}
		})
	}
}
