package migrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/migrations"
)

// Two instances starting at once apply each migration exactly once.
func TestApplyConcurrently(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ctx := context.Background()
	// Start from an empty database: undo what the template applied.
	if _, err := pool.Exec(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ran := make([][]int, 4)
	errs := make([]error, 4)
	for i := range ran {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := pgxpool.New(ctx, pool.Config().ConnString())
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			ran[i], errs[i] = migrations.Apply(ctx, p)
		}(i)
	}
	wg.Wait()
	total := 0
	for i := range ran {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		total += len(ran[i])
	}
	if total != len(all) {
		t.Fatalf("%d migrations applied across instances, want each of %d once", total, len(all))
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(all))
	}
	// Applying again does nothing.
	again, err := migrations.Apply(ctx, pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second apply ran %v, %v", again, err)
	}
}

func TestAllIsOrdered(t *testing.T) {
	t.Parallel()
	ms, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Fatalf("migration %d has version %d: versions must be 1, 2, 3… without gaps", i, m.Version)
		}
	}
}
