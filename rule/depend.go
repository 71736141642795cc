package rule

import (
	"slices"

	"github.com/waymark/waymark/internal/clock"
)

// Dependencies say which new events can change what a set of programs
// decides for a contact, so that event-driven evaluation can leave alone a
// contact whose new events nothing reads. Conditions that change with time
// alone (windows sliding, days_since and days_in_stage growing) are the
// scheduled sweep's: the sweep evaluates every contact whatever its events.
//
// The zero value depends on nothing; AddAll makes every event matter.
type Dependencies struct {
	// All: every event matters (a program reads the event variable, or
	// something could not be analysed).
	All bool
	// Names are the event names aggregates read, as events are named when
	// they arrive (a rule on email_opened_machine also depends on
	// email_opened, which a machine's hit may arrive as).
	Names map[string]bool
	// Event: a program reads the event variable.
	Event bool
}

// Events whose arrival always matters whatever the programs read: an
// identify (it can change traits and email, and join an anonymous
// contact's history to this one) and an alias (which joins histories).
var alwaysMatters = []string{"identify", "alias"}

// AddProgram adds the events that can make p true: the names of its
// aggregates, except those that new events can only make false
// (polarity.go); a nil program reads nothing. It is for conditions whose
// turning true is what acts (rules, triggers, goals, exits).
func (d *Dependencies) AddProgram(p *Program) {
	if p == nil {
		return
	}
	if p.event {
		d.All, d.Event = true, true
	}
	for i, a := range p.Aggregates {
		if i < len(p.directions) && p.directions[i] == canLower {
			// New events of this name can only make the condition
			// false: they cannot make it true.
			continue
		}
		d.AddEvent(a.Event)
		if base, ok := MachineEventBase(a.Event); ok {
			d.AddEvent(base)
		}
	}
}

// AddEvent makes events named name matter.
func (d *Dependencies) AddEvent(name string) {
	if d.Names == nil {
		d.Names = map[string]bool{}
	}
	d.Names[name] = true
}

// AddAll makes every event matter.
func (d *Dependencies) AddAll() { d.All = true }

// Merge adds o's dependencies to d.
func (d *Dependencies) Merge(o Dependencies) {
	d.All = d.All || o.All
	d.Event = d.Event || o.Event
	for n := range o.Names {
		d.AddEvent(n)
	}
}

// Matters reports whether new events named names can change an outcome.
// No names (a contact touched without knowing by what: a merge, a caller
// that does not say) always matters.
func (d *Dependencies) Matters(names []string) bool {
	if d.All || len(names) == 0 {
		return true
	}
	for _, n := range names {
		if d.Names[n] || slices.Contains(alwaysMatters, n) {
			return true
		}
	}
	return false
}

// MachineEvents maps email_opened and email_clicked to the names a
// machine's opens and clicks (a privacy proxy fetching every pixel, a link
// scanner) count under. A machine's hit can arrive under the person's name,
// flagged "machine": true, and still counts under the _machine name.
var MachineEvents = map[string]string{"email_opened": "email_opened_machine", "email_clicked": "email_clicked_machine"}

// MachineEventBase returns, for email_opened_machine, email_opened.
func MachineEventBase(name string) (string, bool) {
	for base, m := range MachineEvents {
		if m == name {
			return base, true
		}
	}
	return "", false
}

// TrueWithoutHistory reports whether p may hold for a contact just
// created in stage, with no events, traits or email (or cannot be
// evaluated so).
func TrueWithoutHistory(p *Program, stage Stage) bool {
	if p == nil {
		return false
	}
	now := clock.Now()
	ok, err := p.Eval(&Facts{Now: now, Stage: stage, StageEnteredAt: now})
	return ok || err != nil
}
