package scheduler_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/scheduler"
	"github.com/waymark/waymark/internal/store"
)

// Three instances sharing one database, each firing on every tick: each
// tick runs one pass, on the leader, until the leader goes away.
func TestOnePassPerTickAcrossInstances(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var passes atomic.Int64
	ran := map[string]int{}
	var mu sync.Mutex
	var scheds []*scheduler.Scheduler
	for i := 0; i < 3; i++ {
		var s *scheduler.Scheduler
		s, err := scheduler.New("@every 1m", store.New(pool), func(ctx context.Context, at time.Time) error {
			passes.Add(1)
			mu.Lock()
			ran[s.Holder()]++
			mu.Unlock()
			return nil
		}, log, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		scheds = append(scheds, s)
	}
	ctx := context.Background()
	for tick := 0; tick < 5; tick++ {
		var wg sync.WaitGroup
		for _, s := range scheds {
			wg.Add(1)
			go func(s *scheduler.Scheduler) { defer wg.Done(); s.Tick(ctx) }(s)
		}
		wg.Wait()
	}
	if passes.Load() != 5 || len(ran) != 1 {
		t.Fatalf("%d passes by %d instances over 5 ticks, want 5 by one leader", passes.Load(), len(ran))
	}
	// The leader stops renewing (its lease expires): another takes over.
	if _, err := pool.Exec(ctx, "UPDATE leases SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	var leader string
	for h := range ran {
		leader = h
	}
	for _, s := range scheds {
		if s.Holder() != leader {
			if !s.Tick(ctx) {
				t.Fatal("no instance took over the expired lease")
			}
			break
		}
	}
	if passes.Load() != 6 || len(ran) != 2 {
		t.Fatalf("after expiry: %d passes by %d instances", passes.Load(), len(ran))
	}
}

func TestParseSpec(t *testing.T) {
	t.Parallel()
	for spec, ok := range map[string]bool{"@every 1m": true, "*/5 * * * *": true, "30 * * * * *": true, "@hourly": true, "every minute": false, "61 * * * *": false} {
		_, err := scheduler.ParseSpec(spec)
		if (err == nil) != ok {
			t.Errorf("ParseSpec(%q) err = %v, want ok=%v", spec, err, ok)
		}
	}
}
