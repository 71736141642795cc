package lifecycle

import (
	"errors"
	"fmt"
	"slices"

	"github.com/waymark/waymark/rule"
)

// Rule is a transition rule: a contact in one of the From stages for whom
// When is true moves to To. Rules are tried in the order given.
type Rule struct {
	Name    string
	Version int
	From    []rule.Stage
	To      rule.Stage
	When    *rule.Program
}

// Move is one hop of a contact between stages, with the rule that caused it
// and the values its condition saw.
type Move struct {
	From, To rule.Stage
	Rule     string
	Version  int
	Observed []rule.Observation
}

// Settle moves a contact as far as the rules take it at f.Now. It tries the
// rules in order; the first whose From holds the current stage and whose
// condition is true moves the contact, and Settle repeats from the new
// stage, where the contact has just arrived (days_in_stage is 0), until no
// rule matches or the matching rule leads to a stage already visited in
// this evaluation (including the starting one). It returns the hops in
// order, none if the contact stays. It does not modify f.
//
// When a condition fails to evaluate, Settle returns the hops made before
// it together with the error, which names the rule.
func Settle(rules []Rule, f *rule.Facts) ([]Move, error) {
	moves, _, err := settle(rules, f)
	return moves, err
}

// settle is Settle; it also returns, when settling stopped because the
// first rule that matched leads back to a stage visited in this
// evaluation, that move: the next pass makes it without any new activity,
// and the pass after moves the contact on again — the contact loops
// between stages on every pass.
func settle(rules []Rule, f *rule.Facts) (moves []Move, back *Move, err error) {
	if f == nil {
		return nil, nil, errors.New("settling: no facts")
	}
	cur := *f
	var seen [8]rule.Stage // no allocation for the usual few hops
	visited := append(seen[:0], cur.Stage)
	for {
		next, ok, err := firstMatch(rules, &cur)
		if err != nil {
			return moves, nil, err
		}
		if !ok {
			return moves, nil, nil
		}
		if slices.Contains(visited, next.rule.To) {
			return moves, &Move{From: cur.Stage, To: next.rule.To, Rule: next.rule.Name, Version: next.rule.Version}, nil
		}
		moves = append(moves, Move{
			From:     cur.Stage,
			To:       next.rule.To,
			Rule:     next.rule.Name,
			Version:  next.rule.Version,
			Observed: next.rule.When.Observe(&cur),
		})
		visited = append(visited, next.rule.To)
		cur.Stage = next.rule.To
		cur.StageEnteredAt = cur.Now
	}
}

type match struct{ rule *Rule }

// firstMatch returns the first rule that moves a contact with facts f.
func firstMatch(rules []Rule, f *rule.Facts) (match, bool, error) {
	for i := range rules {
		r := &rules[i]
		if !slices.Contains(r.From, f.Stage) {
			continue
		}
		if r.When == nil {
			return match{}, false, fmt.Errorf("rule %q (version %d): no condition", r.Name, r.Version)
		}
		ok, err := r.When.Eval(f)
		if err != nil {
			return match{}, false, fmt.Errorf("rule %q (version %d): %w", r.Name, r.Version, err)
		}
		if ok {
			return match{rule: r}, true, nil
		}
	}
	return match{}, false, nil
}
