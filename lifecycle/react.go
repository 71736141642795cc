package lifecycle

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Reactor evaluates contacts at once when events touch them, in the
// background so ingestion never waits for rules: touched contacts are
// collected in a set (so a burst on one contact is evaluated once, and
// memory is bounded by the number of contacts) and evaluated in batches.
// A contact touched while its batch runs is evaluated again after it. What
// a crash loses here, the scheduled sweep catches up.
type Reactor struct {
	engine *Engine
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	dirty map[int64]*Event
	wake  chan struct{}
	// AfterPass, if set, is called after each batch with the contacts that
	// were evaluated (campaigns hook in here).
	AfterPass func(ctx context.Context, ids []int64)
}

// NewReactor returns a reactor on engine; start it with Run.
func NewReactor(engine *Engine, log *slog.Logger, now func() time.Time) *Reactor {
	return &Reactor{engine: engine, log: log, now: now, dirty: map[int64]*Event{}, wake: make(chan struct{}, 1)}
}

// Touch marks contacts for evaluation; events, if given, are the latest
// event of each contact, seen by rules as the event variable.
func (r *Reactor) Touch(ids []int64, events map[int64]*Event) {
	r.mu.Lock()
	for _, id := range ids {
		r.dirty[id] = events[id]
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run evaluates touched contacts until ctx is done.
func (r *Reactor) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			if len(r.dirty) == 0 {
				r.mu.Unlock()
				break
			}
			batch := r.dirty
			r.dirty = make(map[int64]*Event, len(batch))
			r.mu.Unlock()

			ids := make([]int64, 0, len(batch))
			for id := range batch {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			st, err := r.engine.Evaluate(ctx, ids, batch, r.now())
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("evaluating contacts touched by events", "contacts", len(ids), "err", err)
				// Put them back; retry after a pause rather than spin.
				r.mu.Lock()
				for id, ev := range batch {
					if _, again := r.dirty[id]; !again {
						r.dirty[id] = ev
					}
				}
				r.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			if st.Moved > 0 {
				r.log.Debug("contacts moved on events", "contacts", len(ids), "moved", st.Moved)
			}
			if r.AfterPass != nil {
				r.AfterPass(ctx, ids)
			}
		}
	}
}
