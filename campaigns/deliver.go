package campaigns

import (
	"context"
	"sync"
	"time"

	"github.com/waymark/waymark/mailer"
)

// A pass's delivery: persistent SMTP connections, each worked by one
// goroutine for the whole pass (across batches), and one writer that
// records what the connections did in group commits.
//
// The exactly-once rule is per connection: a message is handed to SMTP
// only once it is durably marked 'sending' and the connection's previous
// message is durably final (sent, failed, unknown, or back to queued for a
// retry). So at any moment a connection has at most one message that is
// marked on the wire without a known outcome; a crash leaves at most that
// one in doubt, and RecoverInDoubt marks it unknown, never resent.
//
// Both records go in one request to the writer, which gathers the
// requests of every connection that arrive while it is writing and
// commits them together in one transaction: one round trip and one WAL
// flush for many messages, without ever letting a connection run ahead of
// what is durable.

// item is a send ready for SMTP.
type item struct {
	due   *Due
	msg   *mailer.Message
	final Final
}

// record is what a connection asks the writer to make durable: the end of
// its previous message (a final state or a retry) and the mark of its
// next one.
type record struct {
	finals []Final
	delays []Delay
	mark   *Due
	done   chan recordResult
}

type recordResult struct {
	marked bool
	err    error
}

// maxGroup bounds the records committed together.
const maxGroup = 1000

// writers is how many group commits may be in flight at once (each on
// its own database connection): while one waits for its WAL flush, the
// next gathers what the connections asked for meanwhile.
const writers = 2

// delivery is one pass's connections and writer.
type delivery struct {
	s     *Sender
	ctx   context.Context // the pass; when done, no new message is marked
	work  chan *item
	recs  chan *record
	conns sync.WaitGroup // the connection goroutines
	wrote chan struct{}  // closed when the writers have stopped

	// pending counts the items handed to the connections whose end is
	// not yet durable; the pass waits for it before its last claim, so
	// that 0-delay next steps are sent in the same pass.
	pending sync.WaitGroup

	mu       sync.Mutex
	st       Stats
	first    error
	inflight map[int64][]inflightSend // contact → sends this pass has not yet recorded, for the frequency cap
}

type inflightSend struct {
	at       time.Time
	recorded time.Time // when its end became durable; zero while in flight
}

func (s *Sender) startDelivery(ctx context.Context, queue int) *delivery {
	d := &delivery{
		s:        s,
		ctx:      ctx,
		work:     make(chan *item, queue),
		recs:     make(chan *record, s.cfg.Connections),
		wrote:    make(chan struct{}),
		inflight: map[int64][]inflightSend{},
	}
	var ws sync.WaitGroup
	for range writers {
		ws.Add(1)
		go func() { defer ws.Done(); d.writer() }()
	}
	go func() { ws.Wait(); close(d.wrote) }()
	for range s.cfg.Connections {
		d.conns.Add(1)
		go d.connection()
	}
	return d
}

// fail remembers the pass's first error; the connections then mark
// nothing more.
func (d *delivery) fail(err error) {
	d.mu.Lock()
	if d.first == nil {
		d.first = err
	}
	d.mu.Unlock()
}

func (d *delivery) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.first
}

// enqueue hands items to the connections; false when the pass has failed
// or ended (the items not handed over stay claimed, and the next pass
// releases them).
func (d *delivery) enqueue(items []*item) bool {
	for _, it := range items {
		if d.err() != nil || d.ctx.Err() != nil {
			return false
		}
		d.pending.Add(1)
		d.mu.Lock()
		d.inflight[it.due.ContactID] = append(d.inflight[it.due.ContactID], inflightSend{at: it.final.At})
		d.mu.Unlock()
		select {
		case d.work <- it:
		case <-d.ctx.Done():
			d.settled(it)
			return false
		}
	}
	return true
}

// sentTo returns the times of the pass's sends to contact that a claim
// made at claimedAt may not see as sent in the database yet.
func (d *delivery) sentTo(contact int64, claimedAt time.Time) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []time.Time
	for _, x := range d.inflight[contact] {
		if x.recorded.IsZero() || !x.recorded.Before(claimedAt) {
			out = append(out, x.at)
		}
	}
	return out
}

// prune forgets the sends recorded before a claim that sees them, among
// the contacts of the claim's share (contact id modulo parts = part).
func (d *delivery) prune(claimedAt time.Time, part, parts int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c, xs := range d.inflight {
		if parts > 1 && int(c%int64(parts)) != part {
			continue
		}
		keep := xs[:0]
		for _, x := range xs {
			if x.recorded.IsZero() || !x.recorded.Before(claimedAt) {
				keep = append(keep, x)
			}
		}
		if len(keep) == 0 {
			delete(d.inflight, c)
		} else {
			d.inflight[c] = keep
		}
	}
}

// settled is called once an item's end is durable (or it was dropped).
func (d *delivery) settled(it *item) {
	now := time.Now()
	d.mu.Lock()
	for i, x := range d.inflight[it.due.ContactID] {
		if x.recorded.IsZero() && x.at.Equal(it.final.At) {
			d.inflight[it.due.ContactID][i].recorded = now
			break
		}
	}
	d.mu.Unlock()
	d.pending.Done()
}

// wait waits until every item handed over has ended durably.
func (d *delivery) wait() { d.pending.Wait() }

// close ends the pass: the connections finish, record their last messages
// and say QUIT; then the writer stops.
func (d *delivery) close() (Stats, error) {
	close(d.work)
	d.conns.Wait()
	close(d.recs)
	<-d.wrote
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st, d.first
}

// commit asks the writer to make r durable and waits for it.
func (d *delivery) commit(r *record) recordResult {
	r.done = make(chan recordResult, 1)
	d.recs <- r
	return <-r.done
}

// writer commits the connections' records in groups: whatever arrived
// while the previous group was being written goes in the next.
func (d *delivery) writer() {
	// Records of messages already handed over are written even when the
	// pass is cancelled: they are the truth about what was sent.
	ctx := context.WithoutCancel(d.ctx)
	for r := range d.recs {
		group := []*record{r}
	gather:
		for len(group) < maxGroup {
			select {
			case r2, ok := <-d.recs:
				if !ok {
					break gather
				}
				group = append(group, r2)
			default:
				break gather
			}
		}
		var (
			finals []Final
			delays []Delay
			marks  []*Due
		)
		for _, g := range group {
			finals = append(finals, g.finals...)
			delays = append(delays, g.delays...)
			if g.mark != nil {
				marks = append(marks, g.mark)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		marked, err := d.s.store.Record(wctx, d.s.cfg.Holder, marks, finals, delays)
		cancel()
		i := 0
		for _, g := range group {
			res := recordResult{err: err}
			if g.mark != nil {
				if err == nil {
					res.marked = marked[i]
				}
				i++
			}
			g.done <- res
		}
	}
}

// connection works one SMTP connection until the pass ends.
func (d *delivery) connection() {
	defer d.conns.Done()
	s := d.s
	var (
		conn MailConn
		// the previous message's end, not yet durable
		prev     *record
		prevItem []*item
	)
	flush := func(mark *Due) recordResult {
		r := prev
		if r == nil {
			r = &record{}
		}
		r.mark = mark
		res := d.commit(r)
		if res.err != nil {
			d.fail(res.err)
		}
		for _, it := range prevItem {
			d.settled(it)
		}
		prev, prevItem = nil, nil
		return res
	}
	defer func() {
		if prev != nil {
			flush(nil)
		}
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		var (
			it *item
			ok bool
		)
		select {
		case it, ok = <-d.work:
		default:
			// Nothing waiting: make the last message's end durable
			// now rather than with the next one.
			if prev != nil {
				flush(nil)
			}
			it, ok = <-d.work
		}
		if !ok {
			return
		}
		if d.err() != nil || d.ctx.Err() != nil {
			// Not marked, so not on the wire: it stays claimed
			// until the next pass releases it.
			d.settled(it)
			continue
		}
		if conn == nil {
			c, err := s.mail.Dial(d.ctx)
			if err != nil {
				// Nothing was handed over: a temporary failure.
				fl, delay := s.outcome(it, mailer.Result{Outcome: mailer.TempFail, Stage: mailer.StageConnect, Err: err})
				d.ended(&prev, &prevItem, it, fl, delay)
				continue
			}
			conn = c
		}
		if err := s.pace(d.ctx); err != nil {
			d.settled(it)
			continue
		}
		res := flush(it.due)
		if res.err != nil || !res.marked {
			// Not ours any more (cancelled meanwhile), or the
			// mark could not be recorded: not sent.
			d.settled(it)
			continue
		}
		// The message is durably on the wire. It is finished even if
		// the pass is cancelled meanwhile (CommandTimeout bounds it):
		// its answer is what keeps it out of doubt.
		r := conn.Send(context.WithoutCancel(d.ctx), it.msg)
		fl, delay := s.outcome(it, r)
		d.ended(&prev, &prevItem, it, fl, delay)
	}
}

// ended adds an item's end to what the connection records next, and
// counts it.
func (d *delivery) ended(prev **record, prevItem *[]*item, it *item, fl Final, delay *Delay) {
	if *prev == nil {
		*prev = &record{}
	}
	d.mu.Lock()
	switch {
	case delay != nil:
		(*prev).delays = append((*prev).delays, *delay)
		d.st.Retried++
	default:
		(*prev).finals = append((*prev).finals, fl)
		switch fl.Status {
		case "sent":
			d.st.Sent++
		case "unknown":
			d.st.Unknown++
		default:
			d.st.Failed++
		}
	}
	d.mu.Unlock()
	*prevItem = append(*prevItem, it)
}
