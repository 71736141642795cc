package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Store writes messages durably. Store implementations must be safe to call
// from several goroutines; each call is one transaction.
type Store interface {
	// Ingest stores msgs, skipping those whose (contact, messageId) is
	// already stored, and returns the contacts whose activity changed.
	Ingest(ctx context.Context, msgs []Message) (Result, error)
}

// Result reports one stored batch.
type Result struct {
	Stored     int     // new events
	Duplicates int     // retries already stored
	Contacts   []int64 // contacts touched by new events, ascending
	// Latest is, for each touched contact, its newest new event (what rules
	// see as the event variable when they run because of it).
	Latest map[int64]*Message
	// Names are the names of each touched contact's new events.
	Names map[int64][]string
}

// ErrUnavailable means the messages were not stored (the database is down or
// the writer is stopping); clients should retry.
var ErrUnavailable = errors.New("storage unavailable, retry")

// Writer group-commits messages from concurrent requests: each flusher takes
// whatever is waiting, up to MaxBatch messages, and writes it in one
// transaction, so under load one commit carries many requests and a 200
// never goes out before the commit.
type Writer struct {
	store    Store
	log      *slog.Logger
	maxBatch int
	in       chan *pending
	wg       sync.WaitGroup
	onStored func(ctx context.Context, res Result)
	stop     chan struct{}
	stopOnce sync.Once
}

type pending struct {
	msgs []Message
	done chan error
}

// WriterOptions tune a Writer.
type WriterOptions struct {
	Flushers int // concurrent transactions; default 4
	MaxBatch int // messages per transaction; default 4000
	// OnStored, if set, is called after each commit with the contacts whose
	// activity changed (event-driven evaluation hooks in here).
	OnStored func(ctx context.Context, res Result)
}

// NewWriter starts the flushers; Close stops them.
func NewWriter(store Store, log *slog.Logger, opt WriterOptions) *Writer {
	if opt.Flushers <= 0 {
		opt.Flushers = 4
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 4000
	}
	w := &Writer{store: store, log: log, maxBatch: opt.MaxBatch, in: make(chan *pending, 1024), onStored: opt.OnStored, stop: make(chan struct{})}
	for i := 0; i < opt.Flushers; i++ {
		w.wg.Add(1)
		go w.flusher()
	}
	return w
}

// Write stores msgs and returns once they are committed (nil) or known not
// to be (an error wrapping ErrUnavailable, or ctx's error).
func (w *Writer) Write(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	p := &pending{msgs: msgs, done: make(chan error, 1)}
	select {
	case w.in <- p:
	case <-w.stop:
		return ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over, wait for the outcome even if the client gave up:
	// the answer decides nothing more, but returning early would be a lie.
	return <-p.done
}

// Close stops accepting writes and waits for the flushers to finish.
func (w *Writer) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

func (w *Writer) flusher() {
	defer w.wg.Done()
	for {
		var first *pending
		select {
		case first = <-w.in:
		case <-w.stop:
			// Drain what was handed over before stopping.
			for {
				select {
				case p := <-w.in:
					w.flush([]*pending{p})
				default:
					return
				}
			}
		}
		group := []*pending{first}
		n := len(first.msgs)
	gather:
		for n < w.maxBatch {
			select {
			case p := <-w.in:
				group = append(group, p)
				n += len(p.msgs)
			default:
				break gather
			}
		}
		w.flush(group)
	}
}

func (w *Writer) flush(group []*pending) {
	var msgs []Message
	if len(group) == 1 {
		msgs = group[0].msgs
	} else {
		for _, p := range group {
			msgs = append(msgs, p.msgs...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := w.store.Ingest(ctx, msgs)
	if err != nil {
		w.log.Error("storing events", "messages", len(msgs), "err", err)
		err = errors.Join(ErrUnavailable, err)
	}
	for _, p := range group {
		p.done <- err
	}
	if err == nil && w.onStored != nil && len(res.Contacts) > 0 {
		w.onStored(ctx, res)
	}
}
