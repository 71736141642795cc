// Package stats is the dashboard's figures: daily rollups of stage moves,
// entries and stays, emails, sequence steps and offers, read for a period
// of days.
package stats

import (
	"errors"
	"time"
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
