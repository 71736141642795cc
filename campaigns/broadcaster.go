package campaigns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Broadcast states.
const (
	StateDraft     = "draft"     // no time yet
	StateScheduled = "scheduled" // runs start when their time comes
	StatePaused    = "paused"    // runs start, but none of its emails goes out until resumed
	StateCancelled = "cancelled" // its queued emails were cancelled; no run starts
)

// BroadcastPausedReason is why a paused broadcast's sends wait.
const BroadcastPausedReason = "broadcast paused"

// AwaitingWinnerReason is why the rest of an A/B test's audience waits.
const AwaitingWinnerReason = "waiting for the A/B test's winner"

// StoredBroadcast is a broadcast as stored, with its state.
type StoredBroadcast struct {
	Broadcast
	Source      string // journey or api
	State       string
	StateReason string
	// ScheduledAt is when it was last given its time (a schedule's first
	// run is the first after it); LastRun is its latest run's time (zero:
	// none yet).
	ScheduledAt time.Time
	LastRun     time.Time
}

// BroadcastRun is one run of a broadcast: its send_at, or one firing of
// its schedule.
type BroadcastRun struct {
	ID           int64
	Broadcast    string
	ScheduledFor time.Time
	Local        bool      // ScheduledFor is a wall time in each contact's zone
	Definition   Broadcast // as the run started
	StartedAt    time.Time
	ResolvedAt   *time.Time
	Audience     int64
	DecideAt     *time.Time
	DecidedAt    *time.Time
	Decision     *Decision
}

// BroadcastSend is one contact's email of a run, to queue.
type BroadcastSend struct {
	ContactID int64
	Template  string
	// Variant is the A/B variant (0 without a test), -1 for the rest of
	// the audience, who wait for the winner.
	Variant int
	Test    bool
	Planned time.Time // the contact's time for the run
	Due     time.Time // Planned, spread by the throttle
}

// BroadcastStore is what running broadcasts needs from storage.
type BroadcastStore interface {
	Definitions(ctx context.Context) (Definitions, error)
	// BroadcastsToRun lists the broadcasts that have a time and are not
	// cancelled.
	BroadcastsToRun(ctx context.Context, now time.Time) ([]StoredBroadcast, error)
	// StartRun records a run of b at scheduledFor; created is false when
	// it existed (another tick, instance or process started it).
	StartRun(ctx context.Context, b Broadcast, scheduledFor time.Time, local bool, at time.Time) (run BroadcastRun, created bool, err error)
	// UnresolvedRuns lists the runs whose audience is not queued yet, of
	// broadcasts not cancelled.
	UnresolvedRuns(ctx context.Context) ([]BroadcastRun, error)
	// QueueBroadcastSends queues a run's sends to the contacts among them
	// who are subscribed and have an address, once per (run, contact);
	// it returns how many it queued.
	QueueBroadcastSends(ctx context.Context, run BroadcastRun, sends []BroadcastSend) (int, error)
	// ResolvedRun records that a run's audience is queued, and when its
	// A/B test (if any) is decided: the wait after its first test email
	// is due, or after now if that is past (see Broadcaster.decide).
	ResolvedRun(ctx context.Context, run BroadcastRun, at time.Time) error
	// RunsToDecide lists the runs whose A/B test is due to be decided.
	RunsToDecide(ctx context.Context, now time.Time) ([]BroadcastRun, error)
	// TestSends says when a run's first test email was sent (nil: none
	// yet) and how many of its test emails are still queued or on the
	// wire.
	TestSends(ctx context.Context, run BroadcastRun) (first *time.Time, pending int, err error)
	// PostponeDecision moves an undecided run's decision time to at.
	PostponeDecision(ctx context.Context, run BroadcastRun, at time.Time) error
	// VariantFigures counts, per variant of a run's test, the emails sent
	// and the people who opened (clicked) them by until.
	VariantFigures(ctx context.Context, run BroadcastRun, pickBy string, until time.Time) ([]VariantResult, error)
	// DecideRun records the decision and queues the winner for the rest
	// of the audience, once (false: it was decided already).
	DecideRun(ctx context.Context, run BroadcastRun, d Decision, now time.Time) (bool, error)
}

// Scanner loads every contact's facts a page at a time, as a sweep does
// (lifecycle.Engine.Scan): from the activity rollup when there is one.
type Scanner interface {
	Scan(ctx context.Context, needs []rule.Aggregate, asOf time.Time, dry bool, traits []string, each func([]lifecycle.ContactFacts) error) error
}

// Broadcaster starts broadcasts' runs when their time comes, queues each
// run's audience as sends (which the sender sends like any other, under
// the same policies and guarantees), and decides A/B tests. Tick runs in
// the scheduled pass, on one instance at a time; the run's unique key and
// the sends' make a second tick, instance or process find what the first
// did rather than doing it again.
type Broadcaster struct {
	store BroadcastStore
	scan  Scanner
	log   *slog.Logger
	// Wake, if set, is called when sends became due (a run queued, a
	// winner released).
	Wake  func()
	zones zoneCache
}

// NewBroadcaster returns a broadcaster on store, resolving audiences with
// scan.
func NewBroadcaster(store BroadcastStore, scan Scanner, log *slog.Logger) *Broadcaster {
	return &Broadcaster{store: store, scan: scan, log: log}
}

// What steering broadcasts and reading segments can refuse.
var (
	ErrNoBroadcast     = errors.New("no such broadcast")
	ErrNoSegment       = errors.New("no such segment")
	ErrBroadcastExists = errors.New("the broadcast exists already")
	// ErrBroadcastState: the change does not fit the broadcast's state
	// (a cancelled one, one not paused).
	ErrBroadcastState = errors.New("not in this state")
)

// ErrSegmentGone says a broadcast's audience names a segment the journey
// no longer has.
var ErrSegmentGone = errors.New("its audience's segment no longer exists")

// BroadcastStats says what a tick did.
type BroadcastStats struct {
	Started, Resolved, Queued, Decided int
}

// Tick starts the runs whose time came, queues the audiences of runs not
// queued yet, and decides the A/B tests that are due, as of now.
func (b *Broadcaster) Tick(ctx context.Context, now time.Time) (BroadcastStats, error) {
	var st BroadcastStats
	bs, err := b.store.BroadcastsToRun(ctx, now)
	if err != nil {
		return st, err
	}
	for _, sb := range bs {
		at, local, skipped, err := sb.NextRun(now, sb.ScheduledAt, sb.LastRun)
		if errors.Is(err, ErrNoRun) {
			continue
		}
		if err != nil {
			b.log.Error("broadcast: its time cannot be read", "broadcast", sb.Name, "err", err)
			continue
		}
		if skipped > 0 {
			b.log.Warn("broadcast: runs missed while Waymark was not running are skipped; the latest starts", "broadcast", sb.Name, "skipped", skipped, "run", at.Format(time.RFC3339))
		}
		if _, created, err := b.store.StartRun(ctx, sb.Broadcast, at, local, now); err != nil {
			return st, err
		} else if created {
			st.Started++
		}
	}
	runs, err := b.store.UnresolvedRuns(ctx)
	if err != nil {
		return st, err
	}
	if len(runs) > 0 {
		defs, err := b.store.Definitions(ctx)
		if err != nil {
			return st, err
		}
		for _, run := range runs {
			n, err := b.Resolve(ctx, defs, run, now)
			if errors.Is(err, ErrSegmentGone) {
				// Nobody can be in it: the run is over, said once.
				b.log.Error("broadcast run: its audience cannot be resolved; nothing is sent", "broadcast", run.Broadcast, "run", run.ID, "err", err)
				err = b.store.ResolvedRun(ctx, run, now)
			}
			if err != nil {
				return st, fmt.Errorf("broadcast %s, run %d: %w", run.Broadcast, run.ID, err)
			}
			st.Resolved++
			st.Queued += n
			b.log.Info("broadcast run queued", "broadcast", run.Broadcast, "run", run.ID, "at", run.ScheduledFor.Format(time.RFC3339), "local", run.Local, "sends", n)
		}
	}
	due, err := b.store.RunsToDecide(ctx, now)
	if err != nil {
		return st, err
	}
	for _, run := range due {
		ok, err := b.decide(ctx, run, now)
		if err != nil {
			return st, fmt.Errorf("broadcast %s, run %d: deciding its A/B test: %w", run.Broadcast, run.ID, err)
		}
		if ok {
			st.Decided++
		}
	}
	if st.Queued > 0 || st.Decided > 0 {
		b.wake()
	}
	if r, ok := b.store.(SizeRecorder); ok {
		if err := r.RecordSegmentSizes(ctx, now, SizeInterval); err != nil {
			return st, err
		}
	}
	return st, nil
}

// SizeRecorder is implemented by stores that record segments' sizes a
// day, for their trend; Tick records them at most every SizeInterval.
type SizeRecorder interface {
	RecordSegmentSizes(ctx context.Context, at time.Time, every time.Duration) error
}

// SizeInterval is how often segments' sizes are counted.
const SizeInterval = 5 * time.Minute

func (b *Broadcaster) wake() {
	if b.Wake != nil {
		b.Wake()
	}
}

// Audience resolves who a broadcast reaches now, a page of contacts at a
// time: each receives its members with their sends (variant, time),
// before the store's filter on subscription and address. dry reads the
// activity rollup without rebuilding it (a preview).
func (b *Broadcaster) Audience(ctx context.Context, defs Definitions, def Broadcast, scheduledFor time.Time, local bool, asOf time.Time, dry bool,
	each func(batch []lifecycle.ContactFacts, sends []BroadcastSend) error) error {
	segs, err := compileSegments(defs.Segments)
	if err != nil {
		return err
	}
	var seg *rule.Program
	if def.Audience.Segment != "" {
		if seg = segs.progs[def.Audience.Segment]; seg == nil {
			return fmt.Errorf("%w: %q", ErrSegmentGone, def.Audience.Segment)
		}
	}
	key := SplitKey(&def, scheduledFor)
	variants := 0
	share := 1.0
	if def.Test != nil {
		variants, share = len(def.Test.Variants), def.Test.Share
	}
	fallback := b.zones.location(defs.Settings.DefaultTimezone)
	counts := map[time.Time]int{} // emails at each planned time, for the throttle
	var members []lifecycle.ContactFacts
	var sends []BroadcastSend
	// Traits are read only as needed: the segment's, or the time zone
	// alone for a wall time (decoding every contact's traits was most of
	// the cost of a page).
	traits := []string{}
	if local {
		traits = []string{"timezone"}
	}
	if seg != nil && seg.ReadsTraits() {
		traits = nil
	}
	return b.scan.Scan(ctx, rule.Needs(seg), asOf, dry, traits, func(batch []lifecycle.ContactFacts) error {
		members, sends = members[:0], sends[:0]
		for i := range batch {
			f := &batch[i]
			if f.Email == "" {
				continue
			}
			in := false
			if seg != nil {
				ok, err := seg.Eval(&f.Facts)
				in = err == nil && ok
			}
			if !def.Audience.Holds(f.Stage, in) {
				continue
			}
			planned := DueIn(scheduledFor, local, b.zones.of(f.Traits, fallback))
			v := Split(key, f.ID, share, variants)
			s := BroadcastSend{ContactID: f.ID, Template: def.TemplateOf(max(v, 0)), Variant: v, Test: def.Test != nil && v >= 0, Planned: planned, Due: planned}
			if v >= 0 {
				s.Due = Spread(planned, counts[planned], def.Throttle)
				counts[planned]++
			}
			members = append(members, *f)
			sends = append(sends, s)
		}
		if len(sends) == 0 {
			return nil
		}
		return each(members, sends)
	})
}

// Resolve queues a run's audience (the contacts in it now), page by page,
// and records the run resolved. A run resolved again (a crash half-way)
// queues only those not queued yet.
func (b *Broadcaster) Resolve(ctx context.Context, defs Definitions, run BroadcastRun, now time.Time) (int, error) {
	queued := 0
	err := b.Audience(ctx, defs, run.Definition, run.ScheduledFor, run.Local, now, false, func(_ []lifecycle.ContactFacts, sends []BroadcastSend) error {
		n, err := b.store.QueueBroadcastSends(ctx, run, sends)
		queued += n
		return err
	})
	if err != nil {
		return queued, err
	}
	return queued, b.store.ResolvedRun(ctx, run, now)
}

// decide decides a run's A/B test from its figures and releases the
// winner to the rest of the audience. The wait (the test's after) counts
// from the first test email sent, not from its planned time: a run
// resolved late (a pass that came hours after the run's time, a server
// that was down) or test emails deferred (quiet hours, the cap, a hold)
// would otherwise be decided before anyone could open them, and the rest
// of the audience would get a winner picked from nothing. Until a test
// email is sent the test waits, unless none is left to send (all
// suppressed, failed or cancelled): then it is decided with what there is.
func (b *Broadcaster) decide(ctx context.Context, run BroadcastRun, now time.Time) (bool, error) {
	t := run.Definition.Test
	if t == nil {
		return false, nil
	}
	until := now
	if run.DecideAt != nil {
		until = *run.DecideAt
	}
	first, pending, err := b.store.TestSends(ctx, run)
	if err != nil {
		return false, err
	}
	switch {
	case first != nil && first.Add(t.After).After(until):
		// The wait runs from the first test email sent.
		until = first.Add(t.After)
		if until.After(now) {
			return false, b.store.PostponeDecision(ctx, run, until)
		}
	case first == nil && pending > 0:
		return false, nil // nothing sent yet
	}
	figures, err := b.store.VariantFigures(ctx, run, t.PickBy, until)
	if err != nil {
		return false, err
	}
	for i := range figures {
		v := figures[i].Variant
		figures[i].Label = t.Label(v)
		figures[i].Template = run.Definition.TemplateOf(v)
		figures[i].Subject = run.Definition.SubjectOf(v)
	}
	d := Decide(t, figures, now)
	ok, err := b.store.DecideRun(ctx, run, d, now)
	if ok {
		b.log.Info("broadcast A/B test decided", "broadcast", run.Broadcast, "run", run.ID, "winner", d.Winner+1, "reason", d.Reason)
	}
	return ok, err
}

// Progress counts a run's emails by where they are.
type Progress struct {
	Audience int64 `json:"audience"` // every email of the run
	Queued   int64 `json:"queued"`   // waiting for their time
	// Deferred wait for a policy (a hold, the frequency cap, quiet hours,
	// a retry, a pause): see Reasons.
	Deferred       int64 `json:"deferred"`
	AwaitingWinner int64 `json:"awaiting_winner"` // the rest of an A/B test's audience
	Sending        int64 `json:"sending"`
	Sent           int64 `json:"sent"`
	Failed         int64 `json:"failed"`
	Unknown        int64 `json:"unknown"` // in doubt after a crash, never resent
	Suppressed     int64 `json:"suppressed"`
	Skipped        int64 `json:"skipped"`
	Cancelled      int64 `json:"cancelled"`
	Expired        int64 `json:"expired"`
}

// ReasonCount is how many emails wait, or ended, for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// VariantProgress is a variant's figures so far: emails sent, and the
// people (not machines) who opened and clicked them.
type VariantProgress struct {
	Variant int    `json:"variant"` // from 1
	Label   string `json:"label" db:"-"`
	Test    bool   `json:"test"` // the test share's, or the rest's (the winner)
	Sent    int64  `json:"sent"`
	Opened  int64  `json:"opened"`
	Clicked int64  `json:"clicked"`
}

// RunProgress is a run with its progress.
type RunProgress struct {
	Run      BroadcastRun
	Progress Progress
	// Reasons are why emails wait or did not go out (deferred, skipped,
	// suppressed, cancelled, expired, failed), most first.
	Reasons  []ReasonCount
	Variants []VariantProgress
}

// AudiencePreview is who a broadcast would reach now, changing nothing.
type AudiencePreview struct {
	// At is the run previewed: the broadcast's send_at, its schedule's
	// next firing, or now for a draft; Local says At is a wall time.
	At    time.Time `json:"at"`
	Local bool      `json:"local"`
	// Audience is how many would get it: in its stages and segment,
	// subscribed, with an address (suppressions, holds, the cap and quiet
	// hours are decided when each email is due).
	Audience int            `json:"audience"`
	ByStage  map[string]int `json:"by_stage"`
	// Test counts the test share's contacts per variant; Rest those who
	// would get the winner.
	Test []int `json:"test,omitempty"`
	Rest int   `json:"rest"`
	// Unreachable are in its stages and segment but unsubscribed, without
	// an address, or merged away.
	Unreachable int `json:"unreachable"`
	// First and Last are when the first and the last email would be due
	// (the run rolls across time zones when Local).
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	Examples []string  `json:"examples"`
}

// Previewer is what a preview reads besides the facts.
type Previewer interface {
	// Reachable returns those of ids a broadcast would queue an email to.
	Reachable(ctx context.Context, ids []int64) ([]int64, error)
}

// PreviewRun is the run a preview of b shows at now: its send_at, the
// next firing of its schedule, or now (a draft).
func PreviewRun(b *Broadcast, now time.Time) (time.Time, bool) {
	if b.SendAt != "" {
		if at, local, err := ParseSendAt(b.SendAt); err == nil {
			return at, local
		}
	}
	if b.Schedule != "" {
		if s, local, err := ParseSchedule(b.Schedule); err == nil {
			from := now
			if local {
				from = now.UTC().Add(EarliestOffset)
			}
			if at := s.Next(from); !at.IsZero() {
				return at.UTC(), local
			}
		}
	}
	return now, false
}

// Preview says who b would reach if it ran now (its run's time as
// PreviewRun says, its audience as of now), changing nothing: the dry run
// of a broadcast.
func (b *Broadcaster) Preview(ctx context.Context, defs Definitions, def Broadcast, reach Previewer, now time.Time) (AudiencePreview, error) {
	at, local := PreviewRun(&def, now)
	p := AudiencePreview{At: at, Local: local, ByStage: map[string]int{}, Examples: []string{}}
	if def.Test != nil {
		p.Test = make([]int, len(def.Test.Variants))
	}
	err := b.Audience(ctx, defs, def, at, local, now, true, func(batch []lifecycle.ContactFacts, sends []BroadcastSend) error {
		ids := make([]int64, len(sends))
		for i, s := range sends {
			ids[i] = s.ContactID
		}
		ok, err := reach.Reachable(ctx, ids)
		if err != nil {
			return err
		}
		in := make(map[int64]bool, len(ok))
		for _, id := range ok {
			in[id] = true
		}
		for i, s := range sends {
			if !in[s.ContactID] {
				p.Unreachable++
				continue
			}
			p.Audience++
			p.ByStage[string(batch[i].Stage)]++
			switch {
			case s.Variant < 0:
				p.Rest++
			case p.Test != nil:
				p.Test[s.Variant]++
			}
			if p.First.IsZero() || s.Due.Before(p.First) {
				p.First = s.Due
			}
			if s.Due.After(p.Last) {
				p.Last = s.Due
			}
			p.Examples = lifecycle.AddExample(p.Examples, lifecycle.Who(s.ContactID, batch[i].Email))
		}
		return nil
	})
	return p, err
}
