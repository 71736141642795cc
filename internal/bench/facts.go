package bench

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Baseline runs store.FactsBaselineSQL, reading every row, and returns the rows and
// the time taken.
func Baseline(ctx context.Context, pool *pgxpool.Pool, needs []rule.Aggregate, asOf time.Time) (int64, time.Duration, error) {
	sql, args := store.FactsBaselineSQL(needs, asOf)
	start := time.Now()
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for rows.Next() {
		n++
		_ = rows.RawValues()
	}
	rows.Close()
	return n, time.Since(start), rows.Err()
}

// Partition splits a store's pass over all contacts into n stores, each
// seeing only the contacts of one id range (1..maxID cut in n), so n
// engines can sweep in parallel on n connections. Lists of ids go through
// unchanged.
func Partition(st lifecycle.Store, n int, maxID int64) []lifecycle.Store {
	out := make([]lifecycle.Store, n)
	for i := 0; i < n; i++ {
		lo, hi := maxID*int64(i)/int64(n), maxID*int64(i+1)/int64(n)
		if i == n-1 {
			hi = math.MaxInt64
		}
		out[i] = &rangeStore{Store: st, lo: lo, hi: hi}
	}
	return out
}

// rangeStore sees the contacts with lo < id <= hi.
type rangeStore struct {
	lifecycle.Store
	lo, hi int64
}

func (r *rangeStore) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	if q.IDs != nil {
		return r.Store.LoadFacts(ctx, q)
	}
	if q.After < r.lo {
		q.After = r.lo
	}
	if q.After >= r.hi {
		return nil, nil
	}
	out, err := r.Store.LoadFacts(ctx, q)
	for i, f := range out {
		if f.ID > r.hi {
			return out[:i], err
		}
	}
	return out, err
}
