// Package campaigns is what marketers buy Waymark for: sequences of emails
// started by a trigger (entering a stage, an event, a rule becoming true),
// holds that keep marketing email away from contacts who should not get it
// now, and surprise offers for repeat customers. It is pure domain: the
// store and the mailer are reached through small interfaces.
package campaigns

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/waymark/waymark/rule"
)

// TriggerKind says what starts a sequence.
type TriggerKind string

// The triggers.
const (
	OnEnterStage TriggerKind = "enter_stage" // the contact enters a stage
	OnEvent      TriggerKind = "event"       // an event with this name arrives
	OnRule       TriggerKind = "when"        // a condition becomes true
)

// Trigger starts a sequence for a contact.
type Trigger struct {
	Kind  TriggerKind
	Stage rule.Stage // OnEnterStage
	Event string     // OnEvent
	When  string     // OnRule
}

func (t Trigger) String() string {
	switch t.Kind {
	case OnEnterStage:
		return "entering " + string(t.Stage)
	case OnEvent:
		return "event " + strconv.Quote(t.Event)
	default:
		return "when " + t.When
	}
}

// Step is one email of a sequence.
type Step struct {
	// After is the delay after the previous step went out (after
	// enrolment, for the first step).
	After    time.Duration
	Template string
	Tone     string // pins the tone; empty lets the tone rules choose
	When     string // a condition checked when the step is due; false skips it
	Offer    string // an offer whose coupon this step gives
}

// Sequence is a journey's email sequence, as stored: contacts enrolled
// continue on the version they entered.
type Sequence struct {
	Name     string
	Version  int
	Trigger  Trigger
	Exit     string // leave when true
	Goal     string // converted when true, checked the moment an event lands
	Cooldown time.Duration
	// Stage is the stage the sequence belongs to (its enter_stage
	// trigger): leaving the stage ends the enrolment.
	Stage rule.Stage
	Steps []Step
	// Segment restricts entry to the segment's members (when the
	// contact would be enrolled); empty: no restriction.
	Segment string `json:",omitempty"`
}

// Hold keeps marketing email from contacts while its condition is true.
type Hold struct {
	Name string `db:"name"`
	When string `db:"condition"`
}

// Offer rewards repeat customers with a unique coupon.
type Offer struct {
	Name     string
	When     string
	Share    float64 // the fraction of eligible contacts drawn, 0 < Share <= 1
	Cooldown time.Duration
	Template string
	Valid    time.Duration // how long a coupon is valid; 0: no expiry
	// Codes is the pool coupons are drawn from; when empty, codes are
	// generated as Prefix + random characters.
	Codes  []string
	Prefix string
}

// Settings are the sending policies of a journey.
type Settings struct {
	// At most CapMax marketing emails to a contact in any CapPer; 0: no cap.
	CapMax int
	CapPer time.Duration
	// Quiet hours in the contact's time zone (trait "timezone", else
	// DefaultTimezone): no marketing email from QuietStart to QuietEnd
	// (minutes after midnight; equal means none).
	QuietStart, QuietEnd int
	DefaultTimezone      string
	// HoldExpiry: a send held longer than this expires (recorded as such);
	// 0 keeps held sends waiting.
	HoldExpiry time.Duration
	// LateExpiry: a send that no sender got to within this long of its
	// due time (Waymark was stopped, a backtest, history imported late)
	// expires, recorded as such, instead of going out late; and an event
	// starts a sequence only if the first step it would schedule is not
	// that late already. 0: late sends go out however late, and events
	// of any age start sequences.
	LateExpiry time.Duration
	// Tracking adds the open pixel and rewrites links.
	Tracking bool
}

// DefaultSettings are the policies when a journey says nothing.
func DefaultSettings() Settings {
	return Settings{CapMax: 3, CapPer: 7 * 24 * time.Hour, QuietStart: 21 * 60, QuietEnd: 8 * 60, DefaultTimezone: "UTC", HoldExpiry: 7 * 24 * time.Hour, LateExpiry: 24 * time.Hour, Tracking: true}
}

// Drawn decides, fairly and reproducibly, whether a contact eligible for
// an offer gets it: a hash of the offer and the contact, read as a number
// in [0, 1), below the share. The same contact always gets the same answer
// for the same offer, and across contacts the drawn fraction is the share.
func Drawn(offer string, contactID int64, share float64) bool {
	if share >= 1 {
		return true
	}
	if share <= 0 {
		return false
	}
	return unit(offer, contactID) < share
}

// hashKey is a hash of key and a contact: the draws of offers and the
// split of broadcasts' A/B tests are read from it.
func hashKey(key string, contactID int64) uint64 {
	h := sha256.Sum256([]byte(key + "\x00" + strconv.FormatInt(contactID, 10)))
	return binary.BigEndian.Uint64(h[:8])
}

// Compiled is a sequence with its conditions compiled.
type Compiled struct {
	Sequence
	Trigger *rule.Program // OnRule only
	Exit    *rule.Program
	Goal    *rule.Program
	Steps   []*rule.Program // nil where a step has no condition
}

// Compile compiles a sequence's conditions. Errors name the field.
func Compile(s Sequence) (*Compiled, error) {
	c := &Compiled{Sequence: s, Steps: make([]*rule.Program, len(s.Steps))}
	var err error
	comp := func(field, src string, enrolment bool) *rule.Program {
		if err != nil || src == "" {
			return nil
		}
		var p *rule.Program
		p, err = rule.Compile(src, rule.CompileOptions{AllowEnrolment: enrolment})
		if err != nil {
			err = fmt.Errorf("sequence %q, %s: %w", s.Name, field, err)
		}
		return p
	}
	if s.Trigger.Kind == OnRule {
		c.Trigger = comp("trigger", s.Trigger.When, false)
	}
	c.Exit = comp("exit", s.Exit, true)
	c.Goal = comp("goal", s.Goal, true)
	for i, st := range s.Steps {
		c.Steps[i] = comp(fmt.Sprintf("step %d", i+1), st.When, true)
	}
	return c, err
}
