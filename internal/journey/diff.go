package journey

import (
	"encoding/json"
	"fmt"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/rule"
)

// What applying a journey changes. The stored journey is compared with
// the new one here; the store executes the edits: it gives each added or
// changed definition its next version, writes it, and cancels what a
// removed step or sequence leaves queued.

// Change is one difference a journey apply made (or, in a dry run, would
// make).
type Change struct {
	Kind    string // rule, …
	Name    string
	What    string // added, changed, removed, reordered
	Version int
}

func (c Change) String() string {
	if c.Version > 0 {
		return fmt.Sprintf("%s %q %s (version %d)", c.Kind, c.Name, c.What, c.Version)
	}
	return fmt.Sprintf("%s %q %s", c.Kind, c.Name, c.What)
}

// Op is what an apply does to one named definition (a rule, a sequence, a
// template, an offer).
type Op int

// The ops.
const (
	Added   Op = iota + 1 // not stored: stored at the next version of its name
	Changed               // stored, and different: stored at its next version
	Moved                 // stored, the same, at another place
	Removed               // stored, and no longer in the journey
)

func (o Op) String() string {
	switch o {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Moved:
		return "moved"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Edit is what an apply does to one named definition.
type Edit struct {
	Op       Op
	Name     string
	Position int // its place in the journey (Added, Changed, Moved)
	Index    int // its index in the journey's list (Added, Changed, Moved)
	// Version is the stored version (Changed, Moved, Removed).
	Version int
}

// Diff returns the edits that make the stored definitions (in any order)
// the journey's next (in journey order; Position is the place, Body the
// JSON it would be stored as): one whose JSON differs (key order and
// spacing aside) or that is not stored is written at its next version;
// one that is the same at another place moves; the stored ones the
// journey no longer has are removed. The edits come in journey order, the
// removals last, in the order stored.
func Diff(stored, next []Stored) []Edit {
	byName := make(map[string]Stored, len(stored))
	for _, s := range stored {
		byName[s.Name] = s
	}
	var edits []Edit
	keep := make(map[string]bool, len(next))
	for i, n := range next {
		keep[n.Name] = true
		old, exists := byName[n.Name]
		switch {
		case !exists:
			edits = append(edits, Edit{Op: Added, Name: n.Name, Position: n.Position, Index: i})
		case !SameJSON(old.Body, n.Body):
			edits = append(edits, Edit{Op: Changed, Name: n.Name, Position: n.Position, Index: i, Version: old.Version})
		case old.Position != n.Position:
			edits = append(edits, Edit{Op: Moved, Name: n.Name, Position: n.Position, Index: i, Version: old.Version})
		}
	}
	return append(edits, removed(stored, keep)...)
}

// DiffRules returns the edits that make the stored rules the journey's
// rules (in evaluation order): a rule whose from, to or condition changed,
// or that is not stored, is written at its next version; one that is the
// same at another place in the order moves; the stored rules the journey
// no longer has are removed (last, in the order stored).
func DiffRules(stored []StoredRule, rules []Rule) []Edit {
	current := make([]Stored, len(stored))
	for i, r := range stored {
		current[i] = Stored{Name: r.Name, Version: r.Version, Position: r.Position, Body: ruleBody(r.From, r.To, r.Condition)}
	}
	next := make([]Stored, len(rules))
	for i, r := range rules {
		next[i] = Stored{Name: r.Name, Position: i, Body: ruleBody(RuleFrom(r), string(r.To), r.When)}
	}
	return Diff(current, next)
}

// ruleBody is what is compared of a rule: its from, to and condition.
func ruleBody(from []string, to, condition string) []byte {
	if from == nil {
		from = []string{} // no stage and none listed are the same
	}
	b, _ := json.Marshal([]any{from, to, condition})
	return b
}

// RuleFrom is the rule's from stages as text, as stored.
func RuleFrom(r Rule) []string {
	from := make([]string, len(r.From))
	for i, f := range r.From {
		from[i] = string(f)
	}
	return from
}

// removed returns the removals of the stored definitions not kept, in the
// order stored.
// StoredSegment is a segment as stored.
type StoredSegment struct {
	Name      string `db:"name"`
	Position  int    `db:"position"`
	Condition string `db:"condition"`
}

// DiffSegments returns the edits that make the stored segments the
// journey's (in journey order): a segment whose condition changed, or that
// is not stored, is written (Changed, Added); one that is the same at
// another place moves; the stored ones the journey no longer has are
// removed (last, in the order stored). Segments have no versions.
func DiffSegments(stored []StoredSegment, segs []campaigns.Segment) []Edit {
	body := func(cond string) []byte {
		b, _ := json.Marshal(cond) // a string always marshals
		return b
	}
	current := make([]Stored, len(stored))
	for i, sg := range stored {
		current[i] = Stored{Name: sg.Name, Position: sg.Position, Body: body(sg.Condition)}
	}
	next := make([]Stored, len(segs))
	for i, sg := range segs {
		next[i] = Stored{Name: sg.Name, Position: i, Body: body(sg.When)}
	}
	return Diff(current, next)
}

func removed(stored []Stored, keep map[string]bool) []Edit {
	var edits []Edit
	for _, s := range stored {
		if !keep[s.Name] {
			edits = append(edits, Edit{Op: Removed, Name: s.Name, Version: s.Version, Index: -1})
		}
	}
	return edits
}

// SameJSON reports whether two JSON documents hold the same value (key
// order and spacing aside); a document that is not JSON is the same as
// nothing.
func SameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// WithRule returns the journey's rules with r saved into them: in place of
// the rule of its name, or last if it is new.
func WithRule(stored []StoredRule, r Rule) []Rule {
	list := make([]Rule, 0, len(stored)+1)
	found := false
	for _, c := range stored {
		if c.Name == r.Name {
			list = append(list, r)
			found = true
			continue
		}
		from := make([]rule.Stage, len(c.From))
		for i, f := range c.From {
			from[i] = rule.Stage(f)
		}
		list = append(list, Rule{Name: c.Name, From: from, To: rule.Stage(c.To), When: c.Condition})
	}
	if !found {
		list = append(list, r)
	}
	return list
}
