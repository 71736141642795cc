package campaigns

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Definitions are a journey's campaigns as stored.
type Definitions struct {
	Sequences []Sequence // current versions, in journey order
	Holds     []Hold
	Offers    []Offer
	Segments  []Segment
	Settings  Settings
	// Paused are the sequences paused by hand: they are not in Sequences
	// (they enrol nobody) and their sends wait (see PausedReason).
	Paused []string
}

// Enrolment is a contact in a sequence.
type Enrolment struct {
	ID         int64
	ContactID  int64
	Sequence   string
	Version    int
	EnrolledAt time.Time
	// Candidates only: the contact entered the sequence's stage at this
	// time (enter_stage triggers enrol once per stay in the stage), the
	// delay and template of the first step, and the sequence's cooldown
	// and trigger (what decides its Eligibility).
	StageSince time.Time
	FirstAfter time.Duration
	FirstTmpl  string
	Cooldown   time.Duration
	Trigger    TriggerKind
}

// Ending ends an enrolment and cancels its queued sends.
type Ending struct {
	Enrolment Enrolment
	Status    string // converted, exited, completed, cancelled
	Reason    string
	At        time.Time
}

// Draw is one eligible contact's draw for an offer.
type Draw struct {
	ContactID int64
	Offer     Offer
	Drawn     bool
	At        time.Time
}

// Store is what campaigns need from storage.
type Store interface {
	Definitions(ctx context.Context) (Definitions, error)
	SequenceVersion(ctx context.Context, name string, version int) (Sequence, error)
	// Enrol creates the enrolments that are allowed (each candidate's
	// Eligibility) with their first step queued, and returns those
	// created.
	Enrol(ctx context.Context, candidates []Enrolment) ([]Enrolment, error)
	ActiveEnrolments(ctx context.Context, contactIDs []int64) ([]Enrolment, error)
	// EnrolmentValues computes aggregates for each enrolment, the
	// "enrolment" window counting from its start.
	// EnrolmentValues computes needs for each enrolment (ID, ContactID and
	// EnrolledAt set: the "enrolment" window starts at EnrolledAt), by ID.
	EnrolmentValues(ctx context.Context, es []Enrolment, needs []rule.Aggregate, asOf time.Time) (map[int64]map[rule.Aggregate]float64, error)
	EndEnrolments(ctx context.Context, endings []Ending) error
	// DrawOffers records the draws of contacts not drawn for the offer
	// within its cooldown, gives the drawn ones a coupon and queues the
	// offer's email; it returns how many were drawn.
	DrawOffers(ctx context.Context, draws []Draw) (int, error)
}

// Runner enrols contacts into sequences, ends enrolments, and draws
// offers, batch by batch as the lifecycle engine evaluates contacts (it is
// the engine's Hook), so campaign conditions are read from the same facts
// query as the stage rules.
type Runner struct {
	store Store
	log   *slog.Logger
	// wake, if set (WithWake), is called when sends became due at once.
	wake func()

	mu       sync.Mutex
	defs     Definitions
	compiled map[string]*Compiled // by name@version
	offers   []*rule.Program
	segments segmentSet // defs.Segments, compiled
	// At the journey version loaded (DependencyStore only): the
	// aggregates the definitions read, what they depend on, and whether
	// any sequence version exists at all (if none, no enrolment can).
	journey   string
	needs     []rule.Aggregate
	deps      rule.Dependencies
	sequences bool
}

// DependencyStore is implemented by stores that can tell cheaply whether
// the journey changed and list every stored sequence version. With one,
// the runner reloads its definitions only when the journey changed, and
// can say which events its triggers, goals and exits depend on
// (lifecycle.DependentHook); without, it reloads them for every batch and
// every event matters.
type DependencyStore interface {
	JourneyVersion(ctx context.Context) (string, error)
	SequenceVersions(ctx context.Context) ([]VersionRef, error)
}

// VersionRef names one stored version of a sequence.
type VersionRef struct {
	Name    string `db:"name"`
	Version int    `db:"version"`
}

// RunnerOption configures a Runner (see NewRunner).
type RunnerOption func(*Runner)

// WithWake has the runner call wake when sends became due at once (a
// 0-delay step), so the sender does not wait for its next poll.
func WithWake(wake func()) RunnerOption { return func(r *Runner) { r.wake = wake } }

// NewRunner returns a runner on store.
func NewRunner(store Store, log *slog.Logger, opts ...RunnerOption) *Runner {
	r := &Runner{store: store, log: log, compiled: map[string]*Compiled{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func key(name string, version int) string { return fmt.Sprintf("%s@%d", name, version) }

// compile returns a sequence version's compiled form, cached.
func (r *Runner) compile(s Sequence) (*Compiled, error) {
	k := key(s.Name, s.Version)
	if c, ok := r.compiled[k]; ok {
		return c, nil
	}
	c, err := Compile(s)
	if err != nil {
		return nil, err
	}
	r.compiled[k] = c
	return c, nil
}

// Needs implements lifecycle.Hook: it (re)loads the definitions — with a
// DependencyStore only when the journey changed — and returns the
// aggregates of trigger and offer conditions.
func (r *Runner) Needs(ctx context.Context) ([]rule.Aggregate, error) {
	ds, versioned := r.store.(DependencyStore)
	var version string
	if versioned {
		v, err := ds.JourneyVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading campaigns: %w", err)
		}
		version = v
		r.mu.Lock()
		if r.journey == v && v != "" {
			needs := r.needs
			r.mu.Unlock()
			return needs, nil
		}
		r.mu.Unlock()
	}
	defs, err := r.store.Definitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading campaigns: %w", err)
	}
	var all []*Compiled
	if versioned {
		refs, err := ds.SequenceVersions(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading campaigns: %w", err)
		}
		for _, v := range refs {
			c, err := r.version(ctx, v.Name, v.Version) // loaded once, then cached
			if err != nil {
				return nil, err
			}
			all = append(all, c)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.defs = defs
	var progs []*rule.Program
	var deps rule.Dependencies
	if !versioned {
		deps.AddAll()
	}
	depend := func(c *Compiled) {
		s := c.Sequence
		switch s.Trigger.Kind {
		case OnEnterStage:
			// A contact enters the first stage when it is created, by
			// its first event, whatever its name.
			if s.Trigger.Stage == rule.Stages[0] {
				deps.AddAll()
			}
		case OnEvent:
			deps.AddEvent(s.Trigger.Event)
		case OnRule:
			deps.AddProgram(c.Trigger)
			// A new contact is enrolled by its first evaluation if the
			// trigger holds without history.
			if rule.TrueWithoutHistory(c.Trigger, rule.Stages[0]) {
				deps.AddAll()
			}
		default:
			deps.AddAll()
		}
		deps.AddProgram(c.Goal)
		deps.AddProgram(c.Exit)
	}
	for _, s := range defs.Sequences {
		c, err := r.compile(s)
		if err != nil {
			return nil, err
		}
		if c.Trigger != nil {
			progs = append(progs, c.Trigger)
		}
		depend(c)
	}
	// Enrolments continue on the version they entered: what the goals
	// and exits of every stored version read matters too.
	for _, c := range all {
		depend(c)
	}
	r.offers = r.offers[:0]
	for _, o := range defs.Offers {
		p, err := rule.Compile(o.When, rule.CompileOptions{})
		if err != nil {
			return nil, fmt.Errorf("offer %q: %w", o.Name, err)
		}
		// Offers are drawn by sweeps only: no event dependency.
		r.offers = append(r.offers, p)
		progs = append(progs, p)
	}
	segs, err := compileSegments(defs.Segments)
	if err != nil {
		return nil, err
	}
	for _, p := range segs.programs() {
		// Membership is recorded as contacts are evaluated, on events
		// too; sequences' segment: filters read it.
		progs = append(progs, p)
		deps.AddProgram(p)
		if rule.TrueWithoutHistory(p, rule.Stages[0]) {
			deps.AddAll()
		}
	}
	r.segments = segs
	r.needs = withEventStarts(rule.Needs(progs...), defs.Sequences)
	r.deps = deps
	r.sequences = !versioned || len(all) > 0 || len(defs.Sequences) > 0
	r.journey = version
	return r.needs, nil
}

// Dependencies implements lifecycle.DependentHook: which new events can
// change what the runner does for a contact, as of the last Needs. Event
// triggers depend on their event, rule triggers, goals and exits on what
// they read (of every stored version), and a trigger on entering the first
// stage on every event (it may be a new contact's first). Moves into other
// stages come from rules, whose dependencies the engine adds.
func (r *Runner) Dependencies() rule.Dependencies {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out rule.Dependencies
	out.Merge(r.deps)
	return out
}

// AfterBatch implements lifecycle.Hook.
func (r *Runner) AfterBatch(ctx context.Context, batch []lifecycle.ContactFacts, at time.Time, trigger string) error {
	r.mu.Lock()
	defs := r.defs
	offers := slices.Clone(r.offers)
	segs := r.segments
	r.mu.Unlock()
	if err := r.recordSegments(ctx, segs, batch, at, trigger == "sweep"); err != nil {
		return err
	}
	if err := r.endEnrolments(ctx, batch, at); err != nil {
		return err
	}
	if err := r.enrol(ctx, defs, segs, batch, at, trigger); err != nil {
		return err
	}
	if trigger == "sweep" && len(defs.Offers) > 0 {
		if err := r.draw(ctx, defs, offers, batch, at); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) enrol(ctx context.Context, defs Definitions, segs segmentSet, batch []lifecycle.ContactFacts, at time.Time, trigger string) error {
	var cands []Enrolment
	for _, s := range defs.Sequences {
		r.mu.Lock()
		c, err := r.compile(s)
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if len(s.Steps) == 0 {
			continue
		}
		for i := range batch {
			f := &batch[i]
			start, hit, err := triggered(s, c, f, trigger, defs.Settings.LateExpiry)
			if err != nil {
				r.log.Warn("evaluating a sequence trigger", "sequence", s.Name, "contact", f.ID, "err", err)
			}
			if hit && s.Segment != "" && !segs.has(s.Segment, &f.Facts) {
				continue // not in the sequence's segment
			}
			if hit {
				cands = append(cands, Enrolment{ContactID: f.ID, Sequence: s.Name, Version: s.Version, EnrolledAt: start, Trigger: s.Trigger.Kind,
					StageSince: f.StageEnteredAt, FirstAfter: s.Steps[0].After, FirstTmpl: s.Steps[0].Template, Cooldown: s.Cooldown})
			}
		}
	}
	cands, err := r.unreached(ctx, cands, batch, at)
	if err != nil {
		return err
	}
	if len(cands) == 0 {
		return nil
	}
	created, err := r.store.Enrol(ctx, cands)
	if err != nil {
		return fmt.Errorf("enrolling: %w", err)
	}
	for _, e := range created {
		if e.FirstAfter == 0 {
			r.wakeSender()
			break
		}
	}
	return nil
}

// endEnrolments ends the batch's active enrolments whose goal is reached,
// whose exit holds, or whose contact left the sequence's stage.
func (r *Runner) endEnrolments(ctx context.Context, batch []lifecycle.ContactFacts, at time.Time) error {
	r.mu.Lock()
	maybe := r.sequences || r.journey == ""
	r.mu.Unlock()
	if !maybe {
		// No sequence was ever stored: no enrolment to end.
		return nil
	}
	ids := make([]int64, len(batch))
	byID := make(map[int64]*lifecycle.ContactFacts, len(batch))
	for i := range batch {
		ids[i] = batch[i].ID
		byID[batch[i].ID] = &batch[i]
	}
	active, err := r.store.ActiveEnrolments(ctx, ids)
	if err != nil || len(active) == 0 {
		return err
	}
	var (
		endings []Ending
		needy   []Enrolment
		progs   []*rule.Program
		seqs    = map[int64]*Compiled{}
	)
	for _, e := range active {
		c, err := r.version(ctx, e.Sequence, e.Version)
		if err != nil {
			return err
		}
		seqs[e.ID] = c
		f := byID[e.ContactID]
		if c.Stage != "" && f.Stage != c.Stage {
			if f.StageEnteredAt.Before(e.EnrolledAt) {
				// Facts older than the enrolment: a pass (a sweep) that
				// loaded them before another (the reactor) moved the
				// contact into the stage and enrolled it. Had the contact
				// left the stage since, it would have entered its stage
				// after the enrolment. Judged by a later pass.
				continue
			}
			endings = append(endings, Ending{Enrolment: e, Status: "exited", Reason: fmt.Sprintf("left the stage %s (now %s)", c.Stage, f.Stage), At: at})
			continue
		}
		if c.Goal != nil || c.Exit != nil {
			needy = append(needy, e)
			for _, p := range []*rule.Program{c.Goal, c.Exit} {
				if p != nil {
					progs = append(progs, p)
				}
			}
		}
	}
	if len(needy) > 0 {
		values, err := r.store.EnrolmentValues(ctx, needy, rule.Needs(progs...), at)
		if err != nil {
			return err
		}
		for _, e := range needy {
			if end := reached(seqs[e.ID], e, byID[e.ContactID].Facts, values[e.ID], at); end != nil {
				endings = append(endings, *end)
			}
		}
	}
	if len(endings) == 0 {
		return nil
	}
	return r.store.EndEnrolments(ctx, endings)
}

// version returns the compiled version an enrolment runs on.
func (r *Runner) version(ctx context.Context, name string, version int) (*Compiled, error) {
	r.mu.Lock()
	c, ok := r.compiled[key(name, version)]
	r.mu.Unlock()
	if ok {
		return c, nil
	}
	s, err := r.store.SequenceVersion(ctx, name, version)
	if err != nil {
		return nil, fmt.Errorf("loading sequence %s version %d: %w", name, version, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.compile(s)
}

// Version is the sequence version an enrolment runs on, compiled.
func (r *Runner) Version(ctx context.Context, name string, version int) (*Compiled, error) {
	return r.version(ctx, name, version)
}

func (r *Runner) draw(ctx context.Context, defs Definitions, progs []*rule.Program, batch []lifecycle.ContactFacts, at time.Time) error {
	draws := offerDraws(defs.Offers, progs, batch, at)
	if len(draws) == 0 {
		return nil
	}
	n, err := r.store.DrawOffers(ctx, draws)
	if err != nil {
		return fmt.Errorf("drawing offers: %w", err)
	}
	if n > 0 {
		r.wakeSender()
	}
	return nil
}

func (r *Runner) wakeSender() {
	if r.wake != nil {
		r.wake()
	}
}

// triggered reports whether a contact's facts start sequence s (compiled
// as c) in a pass of kind trigger ("event" or "sweep"), and when the
// enrolment starts: the pass's instant, or for an event trigger the time
// the event occurred (see eventStart). The runner enrols by it; the dry run
// counts by it.
func triggered(s Sequence, c *Compiled, f *lifecycle.ContactFacts, trigger string, late time.Duration) (time.Time, bool, error) {
	switch s.Trigger.Kind {
	case OnEnterStage:
		return f.Now, f.Stage == s.Trigger.Stage, nil
	case OnEvent:
		if trigger == "event" && !slices.Contains(f.NewEvents, s.Trigger.Event) {
			return time.Time{}, false, nil
		}
		at, ok := eventStart(s, &f.Facts, late)
		return at, ok, nil
	case OnRule:
		ok, err := c.Trigger.Eval(&f.Facts)
		return f.Now, ok, err
	}
	return time.Time{}, false, nil
}

// eventStart is when an event-triggered sequence s starts for a contact:
// at the latest occurrence of its event (as of the facts' instant), however
// late Waymark gets to it — the reactor a moment after ingestion, a sweep
// after a restart, a backtest over imported history. Its "enrolment"
// window and its first step's delay count from there. The store enrols a
// contact once per occurrence: not while an enrolment of the sequence was
// running when the event occurred, nor if one started since (see
// Eligibility), so sweeps may offer every recent occurrence again. An
// occurrence whose first step would already be more than late overdue
// (Settings.LateExpiry; 0: no limit) starts nothing: importing years of
// history never mails last year's cart reminders.
func eventStart(s Sequence, f *rule.Facts, late time.Duration) (time.Time, bool) {
	days := f.Value(rule.Aggregate{Kind: rule.AggDaysSince, Event: s.Trigger.Event})
	if math.IsInf(days, 1) || math.IsNaN(days) {
		return time.Time{}, false
	}
	// The store counts from the instant to the microsecond, truncated
	// (as PostgreSQL stores it).
	at := f.Now.Truncate(time.Microsecond).Add(-time.Duration(math.Round(days * float64(24*time.Hour)))).Round(time.Microsecond)
	if late > 0 && len(s.Steps) > 0 && f.Now.Sub(at.Add(s.Steps[0].After)) > late {
		return time.Time{}, false
	}
	return at, true
}

// withEventStarts adds to needs the aggregate eventStart reads for each
// event-triggered sequence.
func withEventStarts(needs []rule.Aggregate, seqs []Sequence) []rule.Aggregate {
	for _, s := range seqs {
		if s.Trigger.Kind != OnEvent {
			continue
		}
		if a := (rule.Aggregate{Kind: rule.AggDaysSince, Event: s.Trigger.Event}); !slices.Contains(needs, a) {
			needs = append(needs, a)
		}
	}
	return needs
}

// unreached drops the candidates that start in the past (an event's
// time) and whose sequence's goal was reached, or its exit held, between
// then and at: a cart reminder is not started for a contact who ordered
// after the cart, before Waymark got to the cart.
func (r *Runner) unreached(ctx context.Context, cands []Enrolment, batch []lifecycle.ContactFacts, at time.Time) ([]Enrolment, error) {
	var (
		late  []Enrolment
		progs []*rule.Program
		seqs  = map[int64]*Compiled{}
	)
	for i, e := range cands {
		if !e.EnrolledAt.Before(at) {
			continue
		}
		r.mu.Lock()
		c, ok := r.compiled[key(e.Sequence, e.Version)]
		r.mu.Unlock()
		if !ok || (c.Goal == nil && c.Exit == nil) {
			continue
		}
		e.ID = -int64(i) - 1 // a key for the values, never stored
		late = append(late, e)
		seqs[e.ID] = c
		progs = append(progs, c.Goal, c.Exit) // Needs skips nil
	}
	if len(late) == 0 {
		return cands, nil
	}
	values, err := r.store.EnrolmentValues(ctx, late, rule.Needs(progs...), at)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*lifecycle.ContactFacts, len(batch))
	for i := range batch {
		byID[batch[i].ID] = &batch[i]
	}
	drop := map[int64]bool{}
	for _, e := range late {
		if end := reached(seqs[e.ID], e, byID[e.ContactID].Facts, values[e.ID], at); end != nil {
			drop[e.ID] = true
			r.log.Debug("not enrolled: since its event, the sequence ended for the contact", "sequence", e.Sequence, "contact", e.ContactID, "event_at", e.EnrolledAt, "ended", end.Status+": "+end.Reason)
		}
	}
	out := cands[:0]
	for i, e := range cands {
		if !drop[-int64(i)-1] {
			out = append(out, e)
		}
	}
	return out, nil
}

// offerDraws are the draws of the batch's contacts whose facts satisfy an
// offer's condition (progs[i] is offers[i]'s), each drawn or not by the
// offer's share.
func offerDraws(offers []Offer, progs []*rule.Program, batch []lifecycle.ContactFacts, at time.Time) []Draw {
	var draws []Draw
	for i, o := range offers {
		for j := range batch {
			if ok, err := progs[i].Eval(&batch[j].Facts); err == nil && ok {
				draws = append(draws, Draw{ContactID: batch[j].ID, Offer: o, Drawn: Drawn(o.Name, batch[j].ID, o.Share), At: at})
			}
		}
	}
	return draws
}
