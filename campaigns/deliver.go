package campaigns

import (
	"context"
	"sync"
	"time"

	"github.com/waymark/waymark/mailer"
)

// A pass's delivery: persistent SMTP connections, each worked by one
// goroutine for the whole pass (across batches), and writers that record
// what the connections did in group commits.
//
// The exactly-once rule is per connection. An SMTP server takes a message
// only when it answers 250 to the final "." of DATA; before that dot it has
// accepted nothing. So a message k may go through MAIL FROM, RCPT TO, DATA
// and its content before anything about it is durable, and its final dot
// is written only once, durably and in one transaction,
//
//   - message k is marked 'sending' (on the wire), and
//   - the connection's previous message k-1 has its end recorded (sent,
//     failed, unknown, or back to queued for a retry).
//
// The connection asks for that commit as soon as k-1's answer is in and
// meanwhile sends k up to its dot; the commit's WAL flush and k's first
// round trips overlap. If the mark fails or k is no longer this sender's,
// the connection is dropped without the dot: the server discards k (RSET
// cannot be sent inside DATA). Invariant: at any moment at most one
// message of a connection has had its final dot written without a durable
// end — the last one marked. A crash while k's commit is in flight leaves
// k-1 'sending' (in doubt: its dot went out) and k 'queued' (its dot did
// not: resent later, never accepted twice); once the commit is durable,
// k-1 is final and k alone is 'sending'. Either way one message per open
// connection is in doubt, and RecoverInDoubt marks it unknown, never
// resent.
//
// The writers gather the requests of every connection that arrive while
// they are writing and commit them together: one round trip and one WAL
// flush for many messages, without ever letting a connection write a final
// dot ahead of what is durable.

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
// its own database connection). One: what the connections ask for while
// a group is being written goes into the next, so groups are about twice
// the size they are with two writers and the statements and WAL flushes
// per message are halved; with two, the machine was busier and sent
// fewer (bench send, 64 connections: 7,150-7,414/s with two, 7,954-8,509/s
// with one).
const writers = 1

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
	// flush makes the previous message's end durable.
	flush := func() {
		res := d.commit(prev)
		if res.err != nil {
			d.fail(res.err)
		}
		for _, it := range prevItem {
			d.settled(it)
		}
		prev, prevItem = nil, nil
	}
	defer func() {
		if prev != nil {
			flush()
		}
		if conn != nil {
			_ = conn.Close()
		}
	}()
	var (
		// the message announced to conn (Next) while the last one
		// ended, and whether the work queue was found closed then
		next   *item
		closed bool
	)
	for {
		var (
			it *item
			ok bool
		)
		switch {
		case next != nil:
			it, ok, next = next, true, nil
		case closed:
		default:
			select {
			case it, ok = <-d.work:
			default:
				// Nothing waiting: make the last message's end durable
				// now rather than with the next one.
				if prev != nil {
					flush()
				}
				it, ok = <-d.work
			}
		}
		if !ok {
			return
		}
		if d.err() != nil || d.ctx.Err() != nil {
			// Not marked, so not on the wire: it stays claimed
			// until the next pass releases it. (Its commands may
			// be out, announced: Close drops such a connection.)
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
		// Ask for the commit of {the previous message's end, this
		// one's mark} and, meanwhile, hand the message to SMTP up to
		// its final dot.
		r := prev
		if r == nil {
			r = &record{}
		}
		r.mark = it.due
		r.done = make(chan recordResult, 1)
		d.recs <- r
		tx, bres := conn.Begin(d.ctx, it.msg)
		res := <-r.done
		if res.err != nil {
			d.fail(res.err)
		}
		for _, p := range prevItem {
			d.settled(p)
		}
		prev, prevItem = nil, nil
		if res.err != nil || !res.marked {
			// Not ours any more (cancelled meanwhile), or the
			// mark could not be recorded: no final dot, nothing
			// accepted; it stays as it was.
			if tx != nil {
				tx.Abort()
			}
			d.settled(it)
			continue
		}
		if tx == nil {
			// Refused or failed before the dot: marked, so its end
			// is recorded like any other.
			fl, delay := s.outcome(it, bres)
			d.ended(&prev, &prevItem, it, fl, delay)
			continue
		}
		// The next message, if one waits, is announced, so that its
		// commands go out with this one's final dot (no pacing: a
		// paced message starts when its slot comes).
		if s.cfg.Rate <= 0 {
			select {
			case nx, ok := <-d.work:
				if ok {
					next = nx
					conn.Next(nx.msg)
				} else {
					closed = true
				}
			default:
			}
		}
		// The message is durably on the wire. It is finished even if
		// the pass is cancelled meanwhile (CommandTimeout bounds it):
		// its answer is what keeps it out of doubt.
		fl, delay := s.outcome(it, tx.Commit(context.WithoutCancel(d.ctx)))
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
