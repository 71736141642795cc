package campaigns

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// PreviewStore is what a preview reads; it changes nothing.
type PreviewStore interface {
	// Enrollable returns the candidates Enrol would enrol now (by each
	// candidate's Eligibility).
	Enrollable(ctx context.Context, cands []Enrolment) ([]Enrolment, error)
	// Drawable returns the draws DrawOffers would record now: those of
	// contacts not drawn for the offer within its cooldown.
	Drawable(ctx context.Context, draws []Draw) ([]Draw, error)
}

// Preview is a dry run's hook (a lifecycle.Hook and MoveObserver): per
// sequence and offer, which contacts one pass would enrol or reward now,
// and the contacts a sequence that starts on entering a stage misses
// because the pass takes them through that stage, or out of it, before
// they were enrolled (they never get its emails). It changes nothing.
type Preview struct {
	store PreviewStore
	defs  Definitions
	seqs  []*Compiled
	index map[string]int // of Sequences, by name
	// offers are the offers' compiled conditions, parallel to defs.Offers.
	offers   []*rule.Program
	segments segmentSet
	// moves are the current batch's, by contact.
	moves map[int64]lifecycle.ContactMoves

	Sequences []SequencePreview // in journey order
	Offers    []OfferPreview
}

// SequencePreview is what a pass would do for one sequence.
type SequencePreview struct {
	Name     string
	Trigger  Trigger
	Enrol    int
	Examples []string
	// Missed are contacts the pass takes through the sequence's stage,
	// or out of it before they were enrolled (enter_stage only).
	Missed         int
	MissedExamples []string
}

// OfferPreview is what a pass would do for one offer.
type OfferPreview struct {
	Name string
	// Eligible contacts: the condition holds and they were not drawn
	// within the cooldown; Reward of them are drawn.
	Eligible int
	Reward   int
	Examples []string // of those rewarded
}

// NewPreview returns a preview of defs' sequences and offers.
func NewPreview(store PreviewStore, defs Definitions) (*Preview, error) {
	p := &Preview{store: store, defs: defs, index: map[string]int{}}
	for _, s := range defs.Sequences {
		c, err := Compile(s)
		if err != nil {
			return nil, err
		}
		p.seqs = append(p.seqs, c)
		p.index[s.Name] = len(p.Sequences)
		p.Sequences = append(p.Sequences, SequencePreview{Name: s.Name, Trigger: s.Trigger})
	}
	for _, o := range defs.Offers {
		prog, err := rule.Compile(o.When, rule.CompileOptions{})
		if err != nil {
			return nil, fmt.Errorf("offer %q: %w", o.Name, err)
		}
		p.offers = append(p.offers, prog)
		p.Offers = append(p.Offers, OfferPreview{Name: o.Name})
	}
	var err error
	if p.segments, err = compileSegments(defs.Segments); err != nil {
		return nil, err
	}
	return p, nil
}

// Needs implements lifecycle.Hook.
func (p *Preview) Needs(context.Context) ([]rule.Aggregate, error) {
	var progs []*rule.Program
	for _, c := range p.seqs {
		if c.Trigger != nil {
			progs = append(progs, c.Trigger)
		}
	}
	progs = append(progs, p.segments.programs()...)
	return withEventStarts(rule.Needs(append(progs, p.offers...)...), p.defs.Sequences), nil
}

// ObserveMoves implements lifecycle.MoveObserver.
func (p *Preview) ObserveMoves(moves []lifecycle.ContactMoves) {
	if p.moves == nil {
		p.moves = map[int64]lifecycle.ContactMoves{}
	}
	for _, m := range moves {
		p.moves[m.ID] = m
	}
}

// missed says whether a pass takes a contact through stage, or out of it,
// and since when it was there (for the enrolment check).
func missed(m lifecycle.ContactMoves, stage rule.Stage) (time.Time, bool) {
	if len(m.Moves) == 0 {
		return time.Time{}, false
	}
	if m.ExpectStage == stage {
		return m.ExpectEnteredAt, true
	}
	for _, h := range m.Moves[:len(m.Moves)-1] {
		if h.To == stage {
			return m.At, true
		}
	}
	return time.Time{}, false
}

// AfterBatch implements lifecycle.Hook: it counts, changing nothing.
func (p *Preview) AfterBatch(ctx context.Context, batch []lifecycle.ContactFacts, at time.Time, trigger string) error {
	defer clear(p.moves)
	email := map[int64]string{}
	var cands, misses []Enrolment
	for i := range batch {
		email[batch[i].ID] = batch[i].Email
	}
	for _, c := range p.seqs {
		s := c.Sequence
		if len(s.Steps) == 0 {
			continue
		}
		for i := range batch {
			f := &batch[i]
			if s.Trigger.Kind == OnEnterStage {
				if since, ok := missed(p.moves[f.ID], s.Trigger.Stage); ok {
					misses = append(misses, Enrolment{ContactID: f.ID, Sequence: s.Name, EnrolledAt: at, StageSince: since, Cooldown: s.Cooldown, Trigger: s.Trigger.Kind})
				}
			}
			if start, hit, _ := triggered(s, c, f, trigger, p.defs.Settings.LateExpiry); hit && (s.Segment == "" || p.segments.has(s.Segment, &f.Facts)) {
				cands = append(cands, Enrolment{ContactID: f.ID, Sequence: s.Name, EnrolledAt: start, StageSince: f.StageEnteredAt, Cooldown: s.Cooldown, Trigger: s.Trigger.Kind})
			}
		}
	}
	for _, list := range []struct {
		cands []Enrolment
		count func(sp *SequencePreview, ex string)
	}{
		{cands, func(sp *SequencePreview, ex string) { sp.Enrol++; sp.Examples = lifecycle.AddExample(sp.Examples, ex) }},
		{misses, func(sp *SequencePreview, ex string) {
			sp.Missed++
			sp.MissedExamples = lifecycle.AddExample(sp.MissedExamples, ex)
		}},
	} {
		if len(list.cands) == 0 {
			continue
		}
		ok, err := p.store.Enrollable(ctx, list.cands)
		if err != nil {
			return fmt.Errorf("previewing enrolments: %w", err)
		}
		for _, e := range ok {
			list.count(&p.Sequences[p.index[e.Sequence]], lifecycle.Who(e.ContactID, email[e.ContactID]))
		}
	}
	if trigger != "sweep" {
		return nil
	}
	draws := offerDraws(p.defs.Offers, p.offers, batch, at)
	if len(draws) == 0 {
		return nil
	}
	ok, err := p.store.Drawable(ctx, draws)
	if err != nil {
		return fmt.Errorf("previewing offers: %w", err)
	}
	for _, d := range ok {
		i := slices.IndexFunc(p.defs.Offers, func(o Offer) bool { return o.Name == d.Offer.Name })
		op := &p.Offers[i]
		op.Eligible++
		if d.Drawn {
			op.Reward++
			op.Examples = lifecycle.AddExample(op.Examples, lifecycle.Who(d.ContactID, email[d.ContactID]))
		}
	}
	return nil
}
