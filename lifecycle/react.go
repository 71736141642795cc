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
	dirty map[int64]*touch
	wake  chan struct{}
	// AfterPass, if set, is called after each batch with the contacts that
	// were evaluated (campaigns hook in here).
	AfterPass func(ctx context.Context, ids []int64)
	// MinInterval is the least time from the start of one pass to the
	// start of the next while contacts keep being touched: under a
	// stream of events, passes take what gathered meanwhile (a contact
	// touched several times is evaluated once) and the fixed cost of a
	// pass (loading rules, the campaigns' definitions) is paid a few
	// times a second, not for every ingested batch. A contact touched
	// after a quiet spell is evaluated at once.
	MinInterval time.Duration
}

// NewReactor returns a reactor on engine; start it with Run.
func NewReactor(engine *Engine, log *slog.Logger, now func() time.Time) *Reactor {
	return &Reactor{engine: engine, log: log, now: now, dirty: map[int64]*touch{}, wake: make(chan struct{}, 1), MinInterval: 200 * time.Millisecond}
}

// touch is what is pending for one contact: its newest event and the names
// of all its new events.
type touch struct {
	event *Event
	names []string
}

// Touch marks contacts for evaluation; events, if given, are the latest
// event of each contact, seen by rules as the event variable, and names the
// names of all their new events (event triggers fire on them).
func (r *Reactor) Touch(ids []int64, events map[int64]*Event, names map[int64][]string) {
	r.mu.Lock()
	for _, id := range ids {
		t := r.dirty[id]
		if t == nil {
			t = &touch{}
			r.dirty[id] = t
		}
		if ev := events[id]; ev != nil && (t.event == nil || !ev.Timestamp.Before(t.event.Timestamp)) {
			t.event = ev
		}
		t.names = append(t.names, names[id]...)
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
		var last time.Time // start of the last pass (wall clock, not the injected one)
		for {
			if wait := r.MinInterval - time.Since(last); !last.IsZero() && wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			r.mu.Lock()
			if len(r.dirty) == 0 {
				r.mu.Unlock()
				break
			}
			last = time.Now()
			batch := r.dirty
			r.dirty = make(map[int64]*touch, len(batch))
			r.mu.Unlock()

			ids := make([]int64, 0, len(batch))
			events := make(map[int64]*Event, len(batch))
			names := make(map[int64][]string, len(batch))
			for id, t := range batch {
				ids = append(ids, id)
				events[id], names[id] = t.event, t.names
			}
			slices.Sort(ids)
			st, err := r.engine.Evaluate(ctx, ids, events, names, r.now())
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("evaluating contacts touched by events", "contacts", len(ids), "err", err)
				// Put them back; retry after a pause rather than spin.
				r.mu.Lock()
				for id, t := range batch {
					if again, ok := r.dirty[id]; ok {
						again.names = append(t.names, again.names...)
						if again.event == nil {
							again.event = t.event
						}
					} else {
						r.dirty[id] = t
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
