package demo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/waymark/waymark/internal/capture"
)

// Options configure a Simulation.
type Options struct {
	// IngestURL is the base of Waymark's Segment API (http://host:port);
	// events go to IngestURL + "/v1/batch" with WriteKey.
	IngestURL string
	WriteKey  string
	// Population is what to play.
	Population *Population
	// Start and End bound the accelerated history; End is normally the
	// wall-clock time the demo started.
	Start, End time.Time
	// Duration is the wall-clock time the history should take (it takes
	// longer if the machine cannot keep up; nothing is skipped).
	Duration time.Duration
	// Step is how far the clock moves at a time (default 1h), SendEvery
	// how often the sender is woken (default 2h) and SweepEvery how often
	// a scheduled pass runs (default 24h), all in simulated time. Sweeps
	// run at SweepAt past midnight UTC (default 17h, morning in the
	// Americas).
	//
	// A scheduled pass over every contact takes real time; when passes
	// every SweepEvery would take more than a third of Duration, they run
	// less often (a whole number of SweepEvery apart, at most 7), like a
	// cron job on a machine that cannot keep up, so that the history
	// still plays in about Duration. Likewise the sender runs less often
	// (at most every 12 SendEvery) when sending every SendEvery would
	// take more than 40% of Duration. Status says how often each runs.
	Step, SendEvery, SweepEvery, SweepAt time.Duration
	// Clock is the clock Waymark runs on; the simulation moves it.
	Clock *Clock
	// Pass runs one scheduled pass (evaluate everyone, enrol, draw offers,
	// wake the sender) at the clock's instant.
	Pass func(ctx context.Context) error
	// Send sends what is due at the clock's instant, and returns when it
	// is done; may be nil. It runs every SendEvery, after each pass, and
	// never while events are being posted, so a hold or a tone decided at
	// an instant sees every event up to it.
	Send func(ctx context.Context) error
	// Live: after the history, keep playing events as the wall clock
	// reaches them, until ctx is done. Otherwise Run returns.
	Live bool
	// CaughtUp, if set, is called once the history has been played.
	CaughtUp func()
	// Mailbox, if set, is the capture server the emails go to: the
	// simulated customers read them there and open some, click some and
	// unsubscribe from a few, through Waymark's tracking links.
	Mailbox *capture.Server
	Client  *http.Client
	Log     *slog.Logger
}

// Status is how far a simulation has come.
type Status struct {
	Now      time.Time // the simulated instant
	CaughtUp bool
	Posted   int // events accepted by the API
	SignedUp int // contacts who have signed up so far
	Passes   int // scheduled passes run
	Engaged  int // opens, clicks and unsubscriptions made
	// Wall-clock time spent posting events, in scheduled passes and
	// sending.
	PostTook, PassTook, SendTook time.Duration
	// SweepEvery and SendEvery are how often, in simulated time, passes
	// and the sender run now.
	SweepEvery, SendEvery time.Duration
}

// Simulation plays a population's events through the ingestion API on an
// accelerated clock.
type Simulation struct {
	opts Options

	mu     sync.Mutex
	status Status
}

// New checks opts and returns a simulation.
func New(opts Options) (*Simulation, error) {
	switch {
	case opts.Population == nil:
		return nil, errors.New("demo: no population")
	case opts.Clock == nil || opts.Pass == nil:
		return nil, errors.New("demo: the simulation needs the clock and the scheduled pass")
	case !opts.End.After(opts.Start):
		return nil, fmt.Errorf("demo: the history ends (%s) before it starts (%s)", opts.End.Format(time.RFC3339), opts.Start.Format(time.RFC3339))
	case opts.IngestURL == "":
		return nil, errors.New("demo: no ingestion URL")
	}
	if opts.Step <= 0 {
		opts.Step = time.Hour
	}
	if opts.SendEvery <= 0 {
		opts.SendEvery = 2 * time.Hour
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = 24 * time.Hour
	}
	if opts.SweepAt <= 0 {
		opts.SweepAt = 17 * time.Hour
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: time.Minute}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.IngestURL = strings.TrimRight(opts.IngestURL, "/")
	return &Simulation{opts: opts, status: Status{Now: opts.Start}}, nil
}

// Status returns how far the simulation has come.
func (s *Simulation) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Now = s.opts.Clock.Now()
	return st
}

// Run plays the history, then (with Live) goes on in real time until ctx
// is done. It returns nil when the history was played (and ctx ended, with
// Live).
func (s *Simulation) Run(ctx context.Context) error {
	o := s.opts
	evs := o.Population.Events
	next := 0 // the first event not yet posted
	// post sends every event up to t.
	post := func(t time.Time) error {
		end := next
		for end < len(evs) && !evs[end].At.After(t) {
			end++
		}
		began := time.Now()
		defer func() {
			s.mu.Lock()
			s.status.PostTook += time.Since(began)
			s.mu.Unlock()
		}()
		for next < end {
			n := min(end-next, 500)
			if err := s.post(ctx, evs[next:next+n]); err != nil {
				return err
			}
			signed := 0
			for _, e := range evs[next : next+n] {
				if e.Type == "identify" {
					signed++
				}
			}
			s.mu.Lock()
			s.status.Posted += n
			s.status.SignedUp += signed
			s.mu.Unlock()
			next += n
		}
		return nil
	}
	var rd *reader
	if o.Mailbox != nil {
		rd = newReader(o.Mailbox, o.Population, uint64(o.Start.Unix()))
	}
	// engage does what readers do by now: after posting, before sending.
	engage := func() error {
		if rd == nil {
			return nil
		}
		n, err := rd.act(ctx, o.Clock.Now())
		s.mu.Lock()
		s.status.Engaged += n
		s.mu.Unlock()
		return err
	}
	var sendCost time.Duration // a moving average of a send's wall-clock time
	send := func() error {
		if o.Send == nil {
			return nil
		}
		began := time.Now()
		err := o.Send(ctx)
		took := time.Since(began)
		if sendCost == 0 {
			sendCost = took
		} else {
			sendCost = (sendCost*7 + took) / 8
		}
		s.mu.Lock()
		s.status.SendTook += took
		s.mu.Unlock()
		if rd != nil {
			rd.look(o.Clock.Now())
		}
		if err != nil {
			return fmt.Errorf("sending at %s: %w", o.Clock.Now().Format(time.RFC3339), err)
		}
		return nil
	}
	var passCost time.Duration // a moving average of a pass's wall-clock time
	pass := func() error {
		began := time.Now()
		defer func() {
			took := time.Since(began)
			if passCost == 0 {
				passCost = took
			} else {
				passCost = (passCost*3 + took) / 4
			}
			s.mu.Lock()
			s.status.PassTook += took
			s.mu.Unlock()
		}()
		if err := o.Pass(ctx); err != nil {
			return fmt.Errorf("scheduled pass at %s: %w", o.Clock.Now().Format(time.RFC3339), err)
		}
		s.mu.Lock()
		s.status.Passes++
		s.mu.Unlock()
		return nil
	}

	o.Clock.Set(o.Start)
	began := time.Now()
	speed := float64(o.End.Sub(o.Start)) / float64(max(o.Duration, time.Millisecond))
	nextSweep := o.Start.Truncate(24 * time.Hour).Add(o.SweepAt)
	for nextSweep.Before(o.Start) {
		nextSweep = nextSweep.Add(o.SweepEvery)
	}
	nextSend := o.Start
	// The wall-clock time one SweepEvery of history may take, a third of
	// it for passes; one SendEvery, 40% of it for sending.
	budget := time.Duration(float64(o.SweepEvery) / speed / 3)
	sendBudget := time.Duration(float64(o.SendEvery) / speed * 0.4)
	every, sendEvery := o.SweepEvery, o.SendEvery
	s.mu.Lock()
	s.status.SweepEvery, s.status.SendEvery = every, sendEvery
	s.mu.Unlock()
	for t := o.Start; t.Before(o.End); {
		step := t.Add(o.Step)
		if step.After(o.End) {
			step = o.End
		}
		// The clock moves first, so whatever the events set off is
		// evaluated at or after the events' own times.
		o.Clock.Set(step)
		if err := post(step); err != nil {
			return err
		}
		if err := engage(); err != nil {
			return err
		}
		sendNow := !step.Before(nextSend)
		if !step.Before(nextSweep) {
			if err := pass(); err != nil {
				return err
			}
			sendNow = true
			n := time.Duration(1)
			if budget > 0 {
				n = min(max(1, (passCost+budget-1)/budget), 7)
			}
			every = n * o.SweepEvery
			s.mu.Lock()
			s.status.SweepEvery = every
			s.mu.Unlock()
			for !nextSweep.After(step) {
				nextSweep = nextSweep.Add(every)
			}
		}
		if sendNow {
			if err := send(); err != nil {
				return err
			}
			n := time.Duration(1)
			if sendBudget > 0 {
				n = min(max(1, (sendCost+sendBudget-1)/sendBudget), 12)
			}
			sendEvery = n * o.SendEvery
			s.mu.Lock()
			s.status.SendEvery = sendEvery
			s.mu.Unlock()
			for !nextSend.After(step) {
				nextSend = nextSend.Add(sendEvery)
			}
		}
		t = step
		// Pace: the simulated time elapsed should match the wall-clock
		// time elapsed at the chosen speed.
		due := began.Add(time.Duration(float64(t.Sub(o.Start)) / speed))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	// The history is played: from here on the clock is the wall clock.
	o.Clock.GoLive()
	if err := post(o.Clock.Now()); err != nil {
		return err
	}
	if err := pass(); err != nil {
		return err
	}
	if err := send(); err != nil {
		return err
	}
	s.mu.Lock()
	s.status.CaughtUp = true
	s.mu.Unlock()
	if o.CaughtUp != nil {
		o.CaughtUp()
	}
	if !o.Live {
		return nil
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := post(o.Clock.Now()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if rd != nil {
			// Live, the sender runs on its own: read what it sent.
			rd.look(o.Clock.Now())
			if err := engage(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// post sends events to the batch API, retrying while the server says it
// is unavailable.
func (s *Simulation) post(ctx context.Context, evs []Event) error {
	body, err := s.batch(evs)
	if err != nil {
		return err
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.IngestURL+"/v1/batch", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(s.opts.WriteKey, "")
		resp, err := s.opts.Client.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				return nil
			case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
				err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
			default:
				// Our own events were refused: a bug, not weather.
				return fmt.Errorf("demo: the ingestion API refused simulated events: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 10 {
			return fmt.Errorf("demo: posting events to %s/v1/batch: %w", s.opts.IngestURL, err)
		}
		s.opts.Log.Warn("demo: posting events, retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// batch encodes events in the Segment batch format.
func (s *Simulation) batch(evs []Event) ([]byte, error) {
	type entry struct {
		Type       string         `json:"type"`
		UserID     string         `json:"userId"`
		Event      string         `json:"event,omitempty"`
		Name       string         `json:"name,omitempty"`
		Properties map[string]any `json:"properties,omitempty"`
		Traits     map[string]any `json:"traits,omitempty"`
		Timestamp  string         `json:"timestamp"`
		MessageID  string         `json:"messageId"`
	}
	out := struct {
		Batch []entry `json:"batch"`
	}{Batch: make([]entry, 0, len(evs))}
	for _, e := range evs {
		en := entry{Type: e.Type, UserID: cmp.Or(e.UserID, s.opts.Population.Contacts[e.Contact].UserID), Properties: e.Props, Traits: e.Traits,
			Timestamp: e.At.Format(time.RFC3339Nano), MessageID: e.ID}
		switch e.Type {
		case "track":
			en.Event = e.Name
		case "page":
			en.Name = e.Name
		}
		out.Batch = append(out.Batch, en)
	}
	return json.Marshal(out)
}
