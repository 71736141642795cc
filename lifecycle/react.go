package lifecycle

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/waymark/waymark/rule"
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

	mu sync.Mutex
	// pending are the contacts touched since the last pass began, each
	// once; dirty is where each is in pending.
	pending []Touched
	dirty   map[int64]int
	busy    bool // a pass is running
	wake    chan struct{}
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
	return &Reactor{engine: engine, log: log, now: now, dirty: map[int64]int{}, wake: make(chan struct{}, 1), MinInterval: 200 * time.Millisecond}
}

// Touch marks contacts for evaluation; events, if given, are the latest
// event of each contact, seen by rules as the event variable, and names the
// names of all their new events (event triggers fire on them).
func (r *Reactor) Touch(ids []int64, events map[int64]*rule.Event, names map[int64][]string) {
	r.mu.Lock()
	for _, id := range ids {
		i, ok := r.dirty[id]
		if !ok {
			i = len(r.pending)
			r.dirty[id] = i
			r.pending = append(r.pending, Touched{ID: id})
		}
		t := &r.pending[i]
		if ev := events[id]; ev != nil && (t.Event == nil || !ev.Timestamp.Before(t.Event.Timestamp)) {
			t.Event = ev
		}
		t.Names = append(t.Names, names[id]...)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Idle reports whether every contact touched so far has been evaluated,
// its moves applied and the engine's hook run: nothing pending, no pass
// running.
func (r *Reactor) Idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) == 0 && !r.busy
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
			if len(r.pending) == 0 {
				r.mu.Unlock()
				break
			}
			last = time.Now()
			batch := r.pending
			r.pending, r.dirty = make([]Touched, 0, len(batch)), make(map[int64]int, len(batch))
			r.busy = true
			r.mu.Unlock()

			slices.SortFunc(batch, func(a, b Touched) int { return cmp.Compare(a.ID, b.ID) })
			// Evaluate reorders batch: a retry needs the original.
			st, err := r.engine.Evaluate(ctx, slices.Clone(batch), r.now())
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("evaluating contacts touched by events", "contacts", len(batch), "err", err)
				// Put them back; retry after a pause rather than spin.
				r.mu.Lock()
				for _, t := range batch {
					if i, ok := r.dirty[t.ID]; ok {
						again := &r.pending[i]
						again.Names = append(t.Names, again.Names...)
						if again.Event == nil {
							again.Event = t.Event
						}
					} else {
						r.dirty[t.ID] = len(r.pending)
						r.pending = append(r.pending, t)
					}
				}
				r.busy = false
				r.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			if st.Moved > 0 {
				r.log.Debug("contacts moved on events", "contacts", len(batch), "moved", st.Moved)
			}
			r.mu.Lock()
			r.busy = false
			r.mu.Unlock()
		}
	}
}
