// Package stats is the dashboard's figures: daily rollups of stage moves,
// entries and stays, emails, sequence steps and offers, read for a period
// of days; and the running totals `waymark demo` shows.
package stats

import (
	"errors"
	"time"

	"github.com/waymark/waymark/rule"
)

// ErrNotRefreshed is returned for the rollups' state before their first
// refresh.
var ErrNotRefreshed = errors.New("the rollups were never refreshed")

// State is when the rollups were refreshed and the contacts per stage
// then.
type State struct {
	RefreshedAt time.Time        `db:"refreshed_at"`
	Stages      map[string]int64 `db:"stages"`
}

// Period is a range of days [From, To) in UTC.
type Period struct{ From, To time.Time }

// Flow is a number of stage moves between two stages (by one rule, when
// Rule is set).
type Flow struct {
	From string `json:"from" db:"from_stage"`
	To   string `json:"to" db:"to_stage"`
	Rule string `json:"rule,omitempty" db:"rule"`
	N    int64  `json:"moves" db:"n"`
}

// EmailDay is one day's email figures.
type EmailDay struct {
	Day          time.Time `json:"day" db:"day"`
	Sent         int64     `json:"sent" db:"sent"`
	Opened       int64     `json:"opened" db:"opened"`
	Clicked      int64     `json:"clicked" db:"clicked"`
	Unsubscribed int64     `json:"unsubscribed" db:"unsubscribed"`
}

// StageFigures are what journey health is computed from, for one period.
type StageFigures struct {
	Entries map[string]int64         // entries into each stage
	Stays   map[string]map[int]int64 // per stage, stays ended by bucket
	Moves   []Flow                   // by pair of stages and rule
}

// StepFigures are one sequence step's figures in one tone and template.
// Step counts from 1, as the journey file and apply's errors do.
type StepFigures struct {
	Sequence  string `json:"sequence" db:"sequence"`
	Step      int    `json:"step" db:"step"`
	Template  string `json:"template" db:"template"`
	Tone      string `json:"tone" db:"tone"`
	Sent      int64  `json:"sent" db:"sent"`
	Opened    int64  `json:"opened" db:"opened"`
	Clicked   int64  `json:"clicked" db:"clicked"`
	Converted int64  `json:"converted" db:"converted"`
}

// OfferFigures are an offer's draws in a period, drawn or not.
type OfferFigures struct {
	Offer     string `db:"offer"`
	Drawn     bool   `db:"drawn"`
	Eligible  int64  `db:"eligible"`
	Converted int64  `db:"converted"`
}

// DemoFigures are what `waymark demo` reports while it runs: contacts by stage,
// emails by status, tone and template, and what the contacts did.
type DemoFigures struct {
	Stages map[rule.Stage]int64
	// Emails by status, and the sent ones by tone and by template.
	Sent, Failed, Unknown int64
	SentByTone            map[string]int64
	SentByTemplate        map[string]int64
	// Due: queued and due at the instant asked about (waiting for the
	// sender); Sending: on the wire; Held: waiting because a hold applies;
	// Later: queued for later (a delay, quiet hours, the frequency cap).
	Due, Sending, Held, Later int64
	// Sent from the win-back sequence, and offer emails sent.
	WinBacks, OfferEmails int64
	// Engagement events recorded (by people, not machines).
	Opened, Clicked, Unsubscribed int64
}
