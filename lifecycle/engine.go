// Package lifecycle is the stage engine: it settles each contact into the
// stage its history warrants, by the transition rules a journey defines
// (settle.go), for every contact in a scheduled sweep and for the contacts
// events touch as they arrive (engine.go, react.go), and says what a
// journey not yet applied would do (dryrun.go). The conditions are
// written in the rule language (package rule); the store loads the facts
// they read, and the engine reads no database itself.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/waymark/waymark/rule"
)

// StoredRule is a transition rule as stored: its source and version.
type StoredRule struct {
	Name      string
	Version   int
	From      []rule.Stage
	To        rule.Stage
	Condition string
}

// ContactFacts is one contact's facts at an instant, with what the store
// needs to apply its moves safely.
type ContactFacts struct {
	ID int64
	rule.Facts
	// NewEvents are the names of the events whose arrival triggered this
	// evaluation (event-driven evaluation only).
	NewEvents []string
}

// ContactMoves are the hops one evaluation settled a contact through.
// They apply only if the contact is still where the evaluation found it
// (stage and time it entered it), so two evaluators never apply a move
// twice or interleave hops of one contact.
type ContactMoves struct {
	ID              int64
	ExpectStage     rule.Stage
	ExpectEnteredAt time.Time
	Moves           []Move
	// Back, when set, is the move settling stopped short of because it
	// leads back to a stage this evaluation visited: the next pass makes
	// it without any new activity, so the contact moves back and forth on
	// every pass (see Loop).
	Back    *Move
	At      time.Time
	Trigger string // "event" or "sweep"
}

// FactsQuery selects contacts and the aggregates to load for them: either
// the IDs given, or the page of contacts after the cursor After, in id
// order.
type FactsQuery struct {
	IDs   []int64
	After int64
	Limit int
	AsOf  time.Time
	Needs []rule.Aggregate
	// Touched, for event-driven evaluation, is parallel to IDs: what
	// touched each contact (its newest event, the names of its new
	// events) and the stages in which that can change an outcome. A
	// contact listed in another stage is left out (its events need not be
	// read). A store may ignore the stages and load everyone.
	Touched []Touched
	// Rollup asks, for a page of contacts, for the aggregates from the
	// activity rollup the store's [SweepPreparer] just brought up to date
	// rather than from the events.
	Rollup bool
	// SkipTraits says no rule reads traits, so they need not be loaded.
	SkipTraits bool
	// TraitKeys, when not nil, are the only traits read (a broadcast
	// reads a contact's time zone alone); a store may load them all.
	TraitKeys []string
	// Compact asks for the aggregates as Facts.Nums (parallel to Needs)
	// rather than the Values map, when the store can: the engine's own
	// passes read them so.
	Compact bool
}

// SweepPreparer is implemented by stores that keep an activity rollup:
// before a pass over every contact the engine asks them to bring it up to
// date for the aggregates needs, then loads pages with Rollup set. An
// error is logged and the pass reads the events instead.
type SweepPreparer interface {
	PrepareSweep(ctx context.Context, needs []rule.Aggregate) error
}

// DryRunPreparer is implemented by stores whose activity rollup can serve a
// dry run as it is: PrepareDryRun brings it up to date with the events
// committed since, like a sweep, if it carries everything needs reads, and
// fails otherwise, never rebuilding it; the dry run then reads the events.
// A dry run must not change what sweeps decide by.
type DryRunPreparer interface {
	PrepareDryRun(ctx context.Context, needs []rule.Aggregate) error
}

// Store is what the engine needs from storage.
type Store interface {
	Rules(ctx context.Context) ([]StoredRule, error)
	LoadFacts(ctx context.Context, q FactsQuery) ([]ContactFacts, error)
	// ApplyMoves applies each contact's moves if the contact is still
	// where it was found, recording every hop; it returns how many
	// contacts moved.
	ApplyMoves(ctx context.Context, moves []ContactMoves) (int, error)
}

// Engine evaluates the stored rules for contacts, in batches.
type Engine struct {
	store Store
	log   *slog.Logger
	// BatchSize is how many contacts one facts query covers.
	BatchSize int
	// SweepBatchSize, when positive, is how many contacts one page of a
	// pass over every contact covers (BatchSize otherwise): a page of
	// the rollup costs two range reads whatever its size, so pages are
	// larger than the lists event-driven evaluation loads.
	SweepBatchSize int
	// compiled caches compiled rules by name and version: the reactor
	// evaluates on every ingested batch, and compiling is not free.
	compiled sync.Map // ruleKey → *Program
	// current caches the stored rules at a journey version (Versioned
	// stores only).
	current struct {
		sync.Mutex
		version string
		rules   []Rule
		deps    StageDependencies
	}

	// parked are the contacts set aside by evaluations (see Parker).
	parked parkedSet

	// hook, if set (WithHook), sees every batch after its moves.
	hook Hook
}

// Hook is work done on each evaluated batch of contacts.
type Hook interface {
	// Needs returns the aggregates the hook's conditions read.
	Needs(ctx context.Context) ([]rule.Aggregate, error)
	// AfterBatch runs after the batch's moves were applied; the facts
	// show each contact in the stage it settled in, their aggregates in
	// either form (Facts.Value and Program.Eval read both).
	AfterBatch(ctx context.Context, batch []ContactFacts, at time.Time, trigger string) error
}

// DependentHook is a Hook that can say which new events can change what
// it does (triggers on events, conditions over activity). Dependencies is
// called after Needs, for the definitions Needs loaded. Event-driven
// evaluation leaves alone contacts whose new events neither the rules nor
// the hook depend on; with a hook that is not a DependentHook, every event
// matters.
type DependentHook interface {
	Hook
	Dependencies() rule.Dependencies
}

// Versioned is implemented by stores that can tell cheaply whether the
// stored journey (rules and campaigns) changed: the version changes
// whenever anything in it does. The engine then reloads rules only when it
// changed, rather than on every event-driven pass.
type Versioned interface {
	JourneyVersion(ctx context.Context) (string, error)
}

// EngineOption configures an Engine (see NewEngine).
type EngineOption func(*Engine)

// WithHook has the engine run h on every batch after its moves (campaigns
// enrol and end enrolments there), with the facts h asks for loaded by the
// same query.
func WithHook(h Hook) EngineOption { return func(e *Engine) { e.hook = h } }

// NewEngine returns an engine on store.
func NewEngine(store Store, log *slog.Logger, opts ...EngineOption) *Engine {
	e := &Engine{store: store, log: log, BatchSize: 2000, SweepBatchSize: 10000}
	for _, o := range opts {
		o(e)
	}
	return e
}

// LoadRules compiles the stored rules.
func LoadRules(stored []StoredRule) ([]Rule, error) {
	rules := make([]Rule, 0, len(stored))
	for _, r := range stored {
		p, err := rule.Compile(r.Condition, rule.CompileOptions{})
		if err != nil {
			return nil, fmt.Errorf("stored rule %q (version %d): %w", r.Name, r.Version, err)
		}
		rules = append(rules, Rule{Name: r.Name, Version: r.Version, From: r.From, To: r.To, When: p})
	}
	return rules, nil
}

// SweepStats reports one pass.
type SweepStats struct {
	Contacts int
	// Skipped are the contacts touched by events that nothing depends on,
	// left to the scheduled sweep (event-driven evaluation only).
	Skipped int
	Moved   int
	Hops    int
	Errors  int
	Elapsed time.Duration
}

// Effect is what one rule would do in a dry run: how many contacts it
// moves from one stage to another, with a few examples.
type Effect struct {
	Rule     string
	From, To rule.Stage
	Contacts int
	Examples []string // emails, or #id for contacts without one
}

// Sweep evaluates every contact at asOf with the stored rules and applies
// the moves.
func (e *Engine) Sweep(ctx context.Context, asOf time.Time) (SweepStats, error) {
	rules, err := e.storedRules(ctx)
	if err != nil {
		return SweepStats{}, err
	}
	extra, _, err := e.hookNeeds(ctx, e.hook)
	if err != nil {
		return SweepStats{}, err
	}
	if err := e.loadParked(ctx); err != nil {
		return SweepStats{}, err
	}
	return e.pass(ctx, rules, FactsQuery{}, asOf, "sweep", e.apply, e.hook, extra, false)
}

// Touched is a contact touched by events, for event-driven evaluation.
type Touched struct {
	ID int64
	// Event is the contact's newest event, seen by rules as the event
	// variable (nil: none known).
	Event *rule.Event
	// Names are the names of all its new events (event triggers fire on
	// them); none: touched without knowing by what (a merge), which
	// always matters.
	Names []string
	// Stages is set by the engine: the stages (bit i for Stages[i]) in
	// which the new events can change an outcome.
	Stages uint8
}

// Evaluate evaluates the contacts touched by events (in ascending ID
// order, each once) now with the stored rules, and applies the moves.
//
// Only contacts whose new events can change an outcome are loaded: one
// with new events all of names that no rule and nothing of the hook reads
// (in the contact's stage) is skipped, and its time-based conditions are
// left to the scheduled sweep, as for every contact. A contact without
// names is evaluated. touched is reused: its Stages are set, and the
// contacts kept are moved to its front.
func (e *Engine) Evaluate(ctx context.Context, touched []Touched, now time.Time) (SweepStats, error) {
	if len(touched) == 0 {
		return SweepStats{}, nil
	}
	rules, deps, err := e.rulesNow(ctx)
	if err != nil {
		return SweepStats{}, err
	}
	extra, hookDeps, err := e.hookNeeds(ctx, e.hook)
	if err != nil {
		return SweepStats{}, err
	}
	deps.Merge(hookDeps)
	// The stages a name matters in, worked out once per name: a pass
	// sees a handful of names over thousands of contacts.
	byName := map[string]uint8{}
	all, readEvent := deps.Mask(nil), deps.ReadEvent()
	keep := touched[:0]
	ids := make([]int64, 0, len(touched))
	for _, t := range touched {
		m := all
		if len(t.Names) > 0 {
			m = 0
			for _, n := range t.Names {
				nm, ok := byName[n]
				if !ok {
					nm = deps.Mask([]string{n})
					byName[n] = nm
				}
				m |= nm
			}
		}
		if m == 0 {
			continue
		}
		t.Stages = m
		if readEvent {
			t.Event.Decode()
		}
		keep = append(keep, t)
		ids = append(ids, t.ID)
	}
	if len(keep) == 0 {
		return SweepStats{Skipped: len(touched)}, nil
	}
	st, err := e.pass(ctx, rules, FactsQuery{IDs: ids, Touched: keep}, now, "event", e.apply, e.hook, extra, false)
	st.Skipped = len(touched) - st.Contacts
	return st, err
}

// hookNeeds returns the aggregates the hook reads and what it depends on
// (everything for a hook that cannot say).
func (e *Engine) hookNeeds(ctx context.Context, hook Hook) ([]rule.Aggregate, rule.Dependencies, error) {
	var deps rule.Dependencies
	if hook == nil {
		return nil, deps, nil
	}
	needs, err := hook.Needs(ctx)
	if err != nil {
		return nil, deps, err
	}
	if dh, ok := hook.(DependentHook); ok {
		deps = dh.Dependencies()
	} else {
		deps.AddAll()
		deps.Event = true
	}
	return needs, deps, nil
}

// rulesNow returns the stored rules and what they depend on; with a
// Versioned store, reloaded only when the journey changed.
func (e *Engine) rulesNow(ctx context.Context) ([]Rule, StageDependencies, error) {
	v, ok := e.store.(Versioned)
	if !ok {
		rules, err := e.storedRules(ctx)
		return rules, StageDependenciesOf(rules), err
	}
	version, err := v.JourneyVersion(ctx)
	if err != nil {
		return nil, StageDependencies{}, fmt.Errorf("loading rules: %w", err)
	}
	c := &e.current
	c.Lock()
	if c.version == version && version != "" {
		rules, deps := c.rules, c.deps.clone()
		c.Unlock()
		return rules, deps, nil
	}
	c.Unlock()
	rules, err := e.storedRules(ctx)
	if err != nil {
		return nil, StageDependencies{}, err
	}
	deps := StageDependenciesOf(rules)
	c.Lock()
	c.version, c.rules, c.deps = version, rules, deps.clone()
	c.Unlock()
	return rules, deps, nil
}

// DryRun evaluates rules (typically a journey not yet applied) for every
// contact at asOf and reports, per rule and per pair of stages, how many
// contacts would move. It changes nothing. See DryRunWith for the loops
// and what campaigns would do.
func (e *Engine) DryRun(ctx context.Context, rules []Rule, asOf time.Time) ([]Effect, SweepStats, error) {
	r, err := e.DryRunWith(ctx, rules, asOf, nil)
	return r.Effects, r.Stats, err
}

func stageIndex(s rule.Stage) int {
	for i, st := range rule.Stages {
		if st == s {
			return i
		}
	}
	return len(rule.Stages)
}

type ruleKey struct {
	name    string
	version int
	source  string
}

func (e *Engine) storedRules(ctx context.Context) ([]Rule, error) {
	stored, err := e.store.Rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	rules := make([]Rule, 0, len(stored))
	for _, r := range stored {
		k := ruleKey{r.Name, r.Version, r.Condition}
		p, ok := e.compiled.Load(k)
		if !ok {
			prog, err := rule.Compile(r.Condition, rule.CompileOptions{})
			if err != nil {
				return nil, fmt.Errorf("stored rule %q (version %d): %w", r.Name, r.Version, err)
			}
			p, _ = e.compiled.LoadOrStore(k, prog)
		}
		rules = append(rules, Rule{Name: r.Name, Version: r.Version, From: r.From, To: r.To, When: p.(*rule.Program)})
	}
	return rules, nil
}

type sink func(ctx context.Context, moves []ContactMoves, emails map[int64]string) (int, error)

func (e *Engine) apply(ctx context.Context, moves []ContactMoves, _ map[int64]string) (int, error) {
	n, err := e.store.ApplyMoves(ctx, moves)
	if err != nil {
		return 0, fmt.Errorf("recording stage moves: %w", err)
	}
	return n, nil
}

// pass evaluates rules for the contacts sel.IDs (all contacts when nil), a
// batch at a time: one facts query per batch, then settling in memory, then
// one write of the batch's moves, then the hook. In a pass over all
// contacts the next batch is loaded while the current one is settled, the
// facts come from the store's activity rollup when it keeps one, and
// settling is spread over the CPUs. hookNeeds are the aggregates hook
// reads (from its Needs).
//
// A batch that fails on one contact's data (ErrContactData) is done again
// in halves, down to that contact, which is parked (unless dry: a dry run
// changes nothing) while the others go on; a parked contact evaluated
// without a failure is unparked.
func (e *Engine) pass(ctx context.Context, rules []Rule, sel FactsQuery, at time.Time, trigger string, out sink, hook Hook, hookNeeds []rule.Aggregate, dry bool) (SweepStats, error) {
	start := time.Now()
	var st SweepStats
	needs := needsOf(rules)
	if hook != nil {
		needs = unionNeeds(needs, hookNeeds)
	}
	if len(rules) == 0 && hook == nil {
		return st, nil
	}
	skipTraits := hook == nil && !readTraits(rules)
	rollup := false
	if sel.IDs == nil {
		var err error
		if rollup, err = e.prepareRollup(ctx, needs, dry); err != nil {
			return st, err
		}
	}
	pk := e.parking(dry)
	batches := make(chan loaded, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.load(lctx, sel, FactsQuery{AsOf: at, Needs: needs, Touched: sel.Touched, Rollup: rollup, SkipTraits: skipTraits, Compact: true}, batches)
	results := make([]settled, 0, e.BatchSize)
	var (
		moves []ContactMoves // parallel to the batch; no Moves: stays
		idx   []int
	)
	for b := range batches {
		if b.err != nil {
			return st, fmt.Errorf("loading facts: %w", b.err)
		}
		for _, p := range b.bad {
			pk.add(p.ID, at, "loading its facts: "+p.Reason)
		}
		st.Errors += len(b.bad)
		batch := b.facts
		results = settleAll(rules, batch, results[:0])
		moves = slices.Grow(moves[:0], len(batch))[:len(batch)]
		idx = slices.Grow(idx[:0], len(batch))[:len(batch)]
		emails := map[int64]string{}
		for i := range batch {
			c := &batch[i]
			idx[i] = i
			st.Contacts++
			hops, err := results[i].hops, results[i].err
			if err != nil {
				// One contact's data not fitting a rule (a trait of the
				// wrong type) must not stop the others.
				st.Errors++
				if st.Errors <= 10 {
					e.log.Warn("evaluating rules", "contact", c.ID, "err", err)
				}
				pk.add(c.ID, at, "evaluating its rules: "+err.Error())
			}
			moves[i] = ContactMoves{ID: c.ID, ExpectStage: c.Stage, ExpectEnteredAt: c.StageEnteredAt, Moves: hops, Back: results[i].back, At: at, Trigger: trigger}
			if len(hops) == 0 {
				continue
			}
			emails[c.ID] = c.Email
			st.Hops += len(hops)
		}
		if hook != nil {
			// The hook sees each contact where it settled.
			for i := range batch {
				if m := moves[i].Moves; len(m) > 0 {
					batch[i].Stage, batch[i].StageEnteredAt = m[len(m)-1].To, at
				}
			}
		}
		// Moves, then the hook, for the batch; for its halves when that
		// fails on a contact's data (moves apply only to contacts still
		// where they were found, so applying them again changes nothing).
		failed := map[int]bool{}
		err := Isolate(ctx, idx, func(part []int) error {
			lo, hi := part[0], part[len(part)-1]+1
			var ms []ContactMoves
			for _, m := range moves[lo:hi] {
				if len(m.Moves) > 0 {
					ms = append(ms, m)
				}
			}
			if len(ms) > 0 {
				n, err := out(ctx, ms, emails)
				if err != nil {
					return err
				}
				st.Moved += n
			}
			if hook != nil {
				return hook.AfterBatch(ctx, batch[lo:hi], at, trigger)
			}
			return nil
		}, func(i int, err error) {
			failed[i] = true
			st.Errors++
			pk.add(batch[i].ID, at, err.Error())
		})
		if err != nil {
			return st, err
		}
		pk.clear(batch, func(i int) bool { return results[i].err == nil && !failed[i] })
		if err := pk.flush(ctx); err != nil {
			return st, err
		}
	}
	st.Elapsed = time.Since(start)
	return st, ctx.Err()
}

// loaded is one batch of facts, or the error loading it; bad are the
// contacts of the batch whose facts could not be loaded (Reason says why).
type loaded struct {
	facts []ContactFacts
	bad   []Parked
	err   error
}

// load sends the batches of sel to out, one ahead of the consumer, and
// closes it after the last (or after an error, which it sends). A batch
// that fails on a contact's data is loaded by id in halves (isolated).
func (e *Engine) load(ctx context.Context, sel, q FactsQuery, out chan<- loaded) {
	defer close(out)
	ids, touched := sel.IDs, sel.Touched
	var after int64
	size := e.BatchSize
	if ids == nil && e.SweepBatchSize > 0 {
		size = e.SweepBatchSize
	}
	for {
		if ids != nil {
			if len(ids) == 0 {
				return
			}
			n := min(len(ids), size)
			q.IDs, ids = ids[:n], ids[n:]
			if touched != nil {
				q.Touched, touched = touched[:n], touched[n:]
			}
		} else {
			q.After, q.Limit = after, size
		}
		var (
			batch []ContactFacts
			bad   []Parked
			err   error
			last  int64 // a page's last contact, when it was loaded by id
		)
		if q.IDs != nil {
			batch, bad, err = e.loadIsolated(ctx, q)
		} else {
			batch, err = e.store.LoadFacts(ctx, q)
			if p, ok := e.store.(Pager); ok && errors.Is(err, ErrContactData) && ctx.Err() == nil {
				// The page again, by id: from the events, in halves.
				var pageIDs []int64
				if pageIDs, err = p.PageIDs(ctx, after, size, q.AsOf); err == nil && len(pageIDs) > 0 {
					byID := q
					byID.IDs, byID.Rollup = pageIDs, false
					batch, bad, err = e.loadIsolated(ctx, byID)
					last = pageIDs[len(pageIDs)-1]
				}
			}
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			select {
			case out <- loaded{err: err}:
			case <-ctx.Done():
			}
			return
		}
		n := len(batch) + len(bad)
		if q.IDs == nil {
			if n == 0 {
				return
			}
			if last == 0 {
				last = batch[len(batch)-1].ID
			}
			after = last
		}
		select {
		case out <- loaded{facts: batch, bad: bad}:
		case <-ctx.Done():
			return
		}
		if q.IDs == nil && n < size {
			return
		}
	}
}

// loadIsolated loads q.IDs; when that fails on a contact's data, it loads
// them in halves (Isolate) and returns the facts of the others with the
// contacts that could not be loaded.
func (e *Engine) loadIsolated(ctx context.Context, q FactsQuery) ([]ContactFacts, []Parked, error) {
	ids, touched := q.IDs, q.Touched
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	var (
		out []ContactFacts
		bad []Parked
	)
	err := Isolate(ctx, idx, func(part []int) error {
		lo, hi := part[0], part[len(part)-1]+1
		q.IDs = ids[lo:hi]
		if touched != nil {
			q.Touched = touched[lo:hi]
		}
		fs, err := e.store.LoadFacts(ctx, q)
		if err == nil {
			if out == nil {
				out = fs
			} else {
				out = append(out, fs...)
			}
		}
		return err
	}, func(i int, err error) {
		bad = append(bad, Parked{ID: ids[i], Reason: err.Error()})
	})
	return out, bad, err
}

// settled is one contact's settling.
type settled struct {
	hops []Move
	back *Move // see settle
	err  error
}

// settleAll settles every contact of batch, on all CPUs for a large batch.
func settleAll(rules []Rule, batch []ContactFacts, out []settled) []settled {
	out = slices.Grow(out[:0], len(batch))[:len(batch)]
	workers := min(runtime.GOMAXPROCS(0), len(batch)/256+1)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := len(batch)*w/workers, len(batch)*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				hops, back, err := settle(rules, &batch[i].Facts)
				out[i] = settled{hops, back, err}
			}
		}()
	}
	wg.Wait()
	return out
}

// readTraits reports whether any rule reads traits.
func readTraits(rules []Rule) bool {
	for _, r := range rules {
		if r.When != nil && r.When.ReadsTraits() {
			return true
		}
	}
	return false
}

func unionNeeds(a, b []rule.Aggregate) []rule.Aggregate {
	seen := make(map[rule.Aggregate]bool, len(a)+len(b))
	out := make([]rule.Aggregate, 0, len(a)+len(b))
	for _, x := range append(append([]rule.Aggregate(nil), a...), b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func needsOf(rules []Rule) []rule.Aggregate {
	ps := make([]*rule.Program, len(rules))
	for i, r := range rules {
		ps[i] = r.When
	}
	return rule.Needs(ps...)
}
