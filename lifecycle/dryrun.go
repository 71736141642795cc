package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/rule"
)

// Report is what a dry run found: the moves per rule, the loops, and the
// pass's figures.
type Report struct {
	Effects []Effect
	Loops   []Loop
	Stats   SweepStats
}

// Loop is a cycle of rules that moves contacts back and forth between
// stages on every pass, without any new activity: each rule's condition
// holds in the stage the one before it moves the contact to.
type Loop struct {
	// Rules take turns in this order; rule i moves a contact from
	// Stages[i] to Stages[i+1], and the last stage is the first.
	Rules    []string
	Stages   []rule.Stage
	Contacts int
	Examples []string // emails, or #id for contacts without one
}

// String names the loop's rules and moves: `subscriber (decision →
// retention) and lapsed (retention → decision)`.
func (l Loop) String() string {
	parts := make([]string, len(l.Rules))
	for i, r := range l.Rules {
		parts[i] = fmt.Sprintf("%s (%s → %s)", r, l.Stages[i], l.Stages[i+1])
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// Sentence says what the loop does, for a refusal: `rules subscriber
// (decision → retention) and lapsed (retention → decision) would move 12
// contacts back and forth on every pass (e.g. ann@example.com)`.
func (l Loop) Sentence() string {
	s := fmt.Sprintf("rules %s would move %d %s back and forth on every pass", l, l.Contacts, map[bool]string{true: "contact", false: "contacts"}[l.Contacts == 1])
	if len(l.Examples) > 0 {
		s += " (e.g. " + strings.Join(l.Examples, ", ") + ")"
	}
	return s
}

// LoopOf returns the loop a contact's settling ran into (ContactMoves.Back
// set), as rules and stages; ok is false when it has none.
func LoopOf(m ContactMoves) (rules []string, stages []rule.Stage, ok bool) {
	if m.Back == nil {
		return nil, nil, false
	}
	start := slices.IndexFunc(m.Moves, func(h Move) bool { return h.From == m.Back.To })
	if start < 0 {
		return nil, nil, false
	}
	for _, h := range m.Moves[start:] {
		rules = append(rules, h.Rule)
		stages = append(stages, h.From)
	}
	return append(rules, m.Back.Rule), append(stages, m.Back.From, m.Back.To), true
}

// MoveObserver is implemented by a dry run's hook that wants each batch's
// moves (with their loops) before its AfterBatch sees the batch.
type MoveObserver interface {
	ObserveMoves(moves []ContactMoves)
}

// DryRunWith evaluates rules for every contact at asOf, changing nothing,
// and reports how many contacts each rule would move, and the loops: rules
// that would move contacts back and forth on every pass. hook, when not
// nil, sees every batch as a sweep's hook would (a campaigns preview); it
// must change nothing either.
func (e *Engine) DryRunWith(ctx context.Context, rules []Rule, asOf time.Time, hook Hook) (Report, error) {
	type key struct {
		rule     string
		from, to rule.Stage
	}
	effects := map[key]*Effect{}
	var order []key
	loops := map[string]*Loop{}
	var loopOrder []string
	pos := map[string]int{}
	for i, r := range rules {
		pos[r.Name] = i
	}
	observer, _ := hook.(MoveObserver)
	collect := func(ctx context.Context, moves []ContactMoves, emails map[int64]string) (int, error) {
		for _, m := range moves {
			for _, h := range m.Moves {
				k := key{h.Rule, h.From, h.To}
				ef := effects[k]
				if ef == nil {
					ef = &Effect{Rule: h.Rule, From: h.From, To: h.To}
					effects[k] = ef
					order = append(order, k)
				}
				ef.Contacts++
				ef.Examples = AddExample(ef.Examples, Who(m.ID, emails[m.ID]))
			}
			rs, ss, ok := LoopOf(m)
			if !ok {
				continue
			}
			// One loop whichever stage a contact is found in: start at
			// the rule written first.
			first := 0
			for i := range rs {
				if pos[rs[i]] < pos[rs[first]] {
					first = i
				}
			}
			rs = append(slices.Clone(rs[first:]), rs[:first]...)
			ss = append(slices.Clone(ss[first:len(ss)-1]), ss[:first+1]...)
			k := strings.Join(rs, "\x00")
			l := loops[k]
			if l == nil {
				l = &Loop{Rules: rs, Stages: ss}
				loops[k] = l
				loopOrder = append(loopOrder, k)
			}
			l.Contacts++
			l.Examples = AddExample(l.Examples, Who(m.ID, emails[m.ID]))
		}
		if observer != nil {
			observer.ObserveMoves(moves)
		}
		return len(moves), nil
	}
	var hookNeeds []rule.Aggregate
	if hook != nil {
		var err error
		if hookNeeds, err = hook.Needs(ctx); err != nil {
			return Report{}, err
		}
	}
	st, err := e.pass(ctx, rules, FactsQuery{}, asOf, "sweep", collect, hook, hookNeeds, true)
	if err != nil {
		return Report{Stats: st}, err
	}
	r := Report{Stats: st, Effects: make([]Effect, 0, len(order))}
	for _, k := range order {
		r.Effects = append(r.Effects, *effects[k])
	}
	// In rule order, then by stage.
	slices.SortStableFunc(r.Effects, func(a, b Effect) int {
		if pos[a.Rule] != pos[b.Rule] {
			return pos[a.Rule] - pos[b.Rule]
		}
		return stageIndex(a.From)*10 + stageIndex(a.To) - stageIndex(b.From)*10 - stageIndex(b.To)
	})
	for _, k := range loopOrder {
		r.Loops = append(r.Loops, *loops[k])
	}
	slices.SortStableFunc(r.Loops, func(a, b Loop) int { return b.Contacts - a.Contacts })
	return r, nil
}

// ErrNoContact is returned by Check for a contact that does not exist.
var ErrNoContact = errors.New("no such contact")

// Check settles one contact with the stored rules at asOf, changing
// nothing: the moves the next pass would make and, when the contact loops
// (see Loop), the move settling stopped short of.
func (e *Engine) Check(ctx context.Context, id int64, asOf time.Time) (ContactMoves, error) {
	rules, err := e.storedRules(ctx)
	if err != nil {
		return ContactMoves{}, err
	}
	facts, err := e.store.LoadFacts(ctx, FactsQuery{IDs: []int64{id}, AsOf: asOf, Needs: needsOf(rules)})
	if err != nil {
		return ContactMoves{}, err
	}
	if len(facts) == 0 {
		return ContactMoves{}, fmt.Errorf("checking contact %d: %w", id, ErrNoContact)
	}
	f := facts[0]
	m := ContactMoves{ID: id, ExpectStage: f.Stage, ExpectEnteredAt: f.StageEnteredAt, At: asOf}
	m.Moves, m.Back, err = settle(rules, &f.Facts)
	return m, err
}

// Who names a contact to a person: its email, or #id without one.
func Who(id int64, email string) string {
	if email == "" {
		return fmt.Sprintf("#%d", id)
	}
	return email
}

// AddExample adds who to a dry run's examples, which keep the first three.
func AddExample(list []string, who string) []string {
	if len(list) >= 3 {
		return list
	}
	return append(list, who)
}
