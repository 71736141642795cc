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
	// Refused are the messages the store refused (Index is the message's
	// position in the messages given), with the field at fault and why;
	// nothing of them was stored. An identify whose traits would take
	// its contact over MaxTraitBytes or MaxTraitKeys is refused so.
	Refused []FieldError
}

// ErrUnavailable means the messages were not stored (the database is down or
// the writer is stopping); clients should retry.
var ErrUnavailable = errors.New("storage unavailable, retry")

// Writer group-commits messages from concurrent requests. Messages are
// routed to a flusher by their identity (userId, else anonymousId), so two
// flushers never create the same contact at once; each flusher takes
// whatever is waiting for it, up to MaxBatch messages, and writes it in one
// transaction, so under load one commit carries many requests and a 200
// never goes out before the commit.
type Writer struct {
	store    Store
	log      *slog.Logger
	maxBatch int
	in       []chan *pending // one per flusher
	wg       sync.WaitGroup
	onStored func(ctx context.Context, res Result)
	stop     chan struct{}
	stopOnce sync.Once
}

type pending struct {
	msgs []Message
	// at is where each message is in the messages given to Write (nil:
	// the same place); refused, set before done is sent, are the
	// messages the store refused, by that place.
	at      []int
	refused []FieldError
	done    chan error
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
	opt.Flushers = min(opt.Flushers, 256) // shards are numbered in a byte
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 4000
	}
	w := &Writer{store: store, log: log, maxBatch: opt.MaxBatch, onStored: opt.OnStored, stop: make(chan struct{})}
	for i := 0; i < opt.Flushers; i++ {
		in := make(chan *pending, 256)
		w.in = append(w.in, in)
		w.wg.Add(1)
		go w.flusher(in)
	}
	return w
}

// shard picks the flusher for m: FNV-1a of its userId, else anonymousId.
func (w *Writer) shard(m *Message) int {
	id := m.UserID
	if id == "" {
		id = m.AnonymousID
	}
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % uint32(len(w.in)))
}

// Write stores msgs and returns once they are committed (nil) or known not
// to be (an error wrapping ErrUnavailable, or ctx's error). The messages
// the store refused come back (Index: their place in msgs); nothing of
// them was stored.
func (w *Writer) Write(ctx context.Context, msgs []Message) ([]FieldError, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	n := len(w.in)
	// Split by flusher, keeping each part in message order.
	first := w.shard(&msgs[0])
	split := false
	shards := make([]uint8, len(msgs))
	if n > 1 {
		for i := range msgs {
			k := w.shard(&msgs[i])
			shards[i] = uint8(k)
			if k != first {
				split = true
			}
		}
	}
	done := make(chan error, n)
	var parts []*pending
	if !split {
		parts = []*pending{{msgs: msgs, done: done}}
	} else {
		counts := make([]int, n)
		for _, k := range shards {
			counts[k]++
		}
		byShard := make([][]Message, n)
		atShard := make([][]int, n)
		for k, c := range counts {
			if c > 0 {
				byShard[k] = make([]Message, 0, c)
				atShard[k] = make([]int, 0, c)
			}
		}
		for i, k := range shards {
			byShard[k] = append(byShard[k], msgs[i])
			atShard[k] = append(atShard[k], i)
		}
		for k, ms := range byShard {
			if len(ms) > 0 {
				parts = append(parts, &pending{msgs: ms, at: atShard[k], done: done})
			}
		}
	}
	handed := 0
	var err error
hand:
	for _, p := range parts {
		k := first
		if split {
			k = w.shard(&p.msgs[0])
		}
		select {
		case w.in[k] <- p:
			handed++
		case <-w.stop:
			err = ErrUnavailable
			break hand
		case <-ctx.Done():
			err = ctx.Err()
			break hand
		}
	}
	// Once handed over, wait for the outcome even if the client gave up:
	// the answer decides nothing more, but returning early would be a lie
	// (and the messages may point into the request's buffer).
	for i := 0; i < handed; i++ {
		if e := <-done; e != nil && err == nil {
			err = e
		}
	}
	var refused []FieldError
	for _, p := range parts[:handed] {
		for _, r := range p.refused {
			if p.at != nil {
				r.Index = p.at[r.Index]
			}
			refused = append(refused, r)
		}
	}
	return refused, err
}

// Close stops accepting writes and waits for the flushers to finish.
func (w *Writer) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

func (w *Writer) flusher(in chan *pending) {
	defer w.wg.Done()
	for {
		var first *pending
		select {
		case first = <-in:
		case <-w.stop:
			// Drain what was handed over before stopping.
			for {
				select {
				case p := <-in:
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
			case p := <-in:
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
		n := 0
		for _, p := range group {
			n += len(p.msgs)
		}
		msgs = make([]Message, 0, n)
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
	if err == nil && w.onStored != nil && len(res.Contacts) > 0 {
		// The messages may point into request buffers that are reused
		// once the requests are answered: keep copies of what OnStored
		// sees.
		for c, m := range res.Latest {
			cp := *m
			cp.Properties = clone(m.Properties)
			cp.Traits = clone(m.Traits)
			cp.Context = clone(m.Context)
			res.Latest[c] = &cp
		}
	}
	if err == nil {
		// Each refusal goes back to the request its message came from.
		off := 0
		for _, p := range group {
			for _, r := range res.Refused {
				if r.Index >= off && r.Index < off+len(p.msgs) {
					r.Index -= off
					p.refused = append(p.refused, r)
				}
			}
			off += len(p.msgs)
		}
	}
	for _, p := range group {
		p.done <- err
	}
	if err == nil && w.onStored != nil && len(res.Contacts) > 0 {
		w.onStored(ctx, res)
	}
}
