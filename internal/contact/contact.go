// Package contact is what Waymark knows of a contact, as the API, the
// dashboard and the command line read it: the contact, its timeline (stage
// moves, emails, offers, enrolments, events), why it is parked, and the
// addresses never sent to (suppressions).
package contact

import (
	"errors"
	"time"
)

// ErrNotFound is returned for a contact that does not exist (or was
// merged into another).
var ErrNotFound = errors.New("no such contact")

// ErrBadCursor is returned for a cursor that was not made by a listing in
// the same order.
var ErrBadCursor = errors.New("not a cursor from this listing")

// Contact is a contact as stored.
type Contact struct {
	ID             int64          `json:"id" db:"id"`
	UserID         string         `json:"user_id,omitempty" db:"user_id"`
	AnonymousID    string         `json:"anonymous_id,omitempty" db:"anonymous_id"`
	Email          string         `json:"email,omitempty" db:"email"`
	Traits         map[string]any `json:"traits" db:"traits"`
	Status         string         `json:"status" db:"status"`
	Stage          string         `json:"stage" db:"stage"`
	StageEnteredAt time.Time      `json:"stage_entered_at" db:"stage_entered_at"`
	CreatedAt      time.Time      `json:"created_at" db:"created_at"`
	UpdatedAt      time.Time      `json:"updated_at" db:"updated_at"`
}

// Query selects a page of contacts. Sort is one of the allow-listed
// Sorts; After is the cursor a previous page returned.
type Query struct {
	Email string
	Stage string
	Sort  string
	After string
	Limit int
}

// Sorts are the orders contacts can be listed in.
var Sorts = []string{"id", "-id", "created_at", "-created_at"}

// Parking is why a contact is parked, and since when.
type Parking struct {
	Reason string    `json:"reason" db:"reason"`
	Since  time.Time `json:"since" db:"since"`
}

// Suppression is an address never sent to.
type Suppression struct {
	Email     string    `json:"email" db:"email"`
	Reason    string    `json:"reason" db:"reason"`
	Detail    string    `json:"detail,omitempty" db:"detail"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// SuppressionSorts are the orders suppressions can be listed in.
var SuppressionSorts = []string{"email", "-created_at"}
