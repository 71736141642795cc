package contact

import (
	"time"

	"github.com/waymark/waymark/internal/report"
)

// Timeline is everything that happened to one contact.
type Timeline struct {
	Events      []TimelineEvent     `json:"events"`
	EventsTotal int64               `json:"events_total"`
	Moves       []Transition        `json:"moves"`
	Sends       []TimelineSend      `json:"sends"`
	Draws       []TimelineDraw      `json:"offers"`
	Enrolments  []TimelineEnrolment `json:"enrolments"`
	// Conversions are the contact's goal events, newest first, each with
	// the email credited and why.
	Conversions []report.Conversion `json:"conversions"`
}

// Transition is one recorded stage move.
type Transition struct {
	From       string         `db:"from_stage"`
	To         string         `db:"to_stage"`
	Rule       string         `db:"rule"`
	Version    int            `db:"rule_version"`
	Observed   map[string]any `db:"observed"`
	Trigger    string         `db:"trigger"`
	At         time.Time      `db:"at"`
	ContactID  int64          `db:"contact_id"`
	Identifier string         `db:"identifier"`
}

// TimelineEvent is one event of a contact.
type TimelineEvent struct {
	Name       string         `json:"name" db:"name"`
	Kind       string         `json:"kind" db:"kind"`
	Properties map[string]any `json:"properties" db:"properties"`
	At         time.Time      `json:"at" db:"at"`
}

// TimelineSend is one email of a contact, with its opens and clicks.
type TimelineSend struct {
	ID            int64      `json:"id" db:"id"`
	Sequence      string     `json:"sequence,omitempty" db:"sequence"`
	Step          int        `json:"step,omitempty" db:"step"` // from 1; 0 for an email that is not a sequence's
	Offer         string     `json:"offer,omitempty" db:"offer"`
	OfferCode     string     `json:"offer_code,omitempty" db:"offer_code"`
	Template      string     `json:"template" db:"template"`
	Version       int        `json:"template_version,omitempty" db:"template_version"`
	Status        string     `json:"status" db:"status"`
	Tone          string     `json:"tone,omitempty" db:"tone"`
	ToneReason    string     `json:"tone_reason,omitempty" db:"tone_reason"`
	DueAt         time.Time  `json:"due_at" db:"due_at"`
	SentAt        *time.Time `json:"sent_at,omitempty" db:"sent_at"`
	DelayedReason string     `json:"delayed_reason,omitempty" db:"delayed_reason"`
	SMTPResponse  string     `json:"smtp_response,omitempty" db:"smtp_response"`
	Opens         int64      `json:"opens" db:"opens"`
	Clicks        int64      `json:"clicks" db:"clicks"`
}

// TimelineDraw is one offer draw of a contact.
type TimelineDraw struct {
	Offer     string     `json:"offer" db:"offer"`
	Drawn     bool       `json:"drawn" db:"drawn"`
	Code      string     `json:"code,omitempty" db:"code"`
	ExpiresAt *time.Time `json:"expires_at,omitempty" db:"expires_at"`
	At        time.Time  `json:"at" db:"at"`
}

// TimelineEnrolment is one enrolment of a contact in a sequence.
type TimelineEnrolment struct {
	ID         int64      `json:"id" db:"id"`
	Sequence   string     `json:"sequence" db:"sequence"`
	Version    int        `json:"version" db:"version"`
	Status     string     `json:"status" db:"status"`
	Reason     string     `json:"reason,omitempty" db:"reason"`
	EnrolledAt time.Time  `json:"enrolled_at" db:"enrolled_at"`
	EndedAt    *time.Time `json:"ended_at,omitempty" db:"ended_at"`
}
