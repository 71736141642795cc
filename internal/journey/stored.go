package journey

import (
	"encoding/json"
	"errors"
	"time"
)

// The journey as stored: what applying it compares (Stored, StoredRule),
// and what the API and the dashboard list (RuleInfo, Named).

// Stored is a named definition as stored: its version, its place (0 for
// definitions whose order does not matter) and its body (JSON).
type Stored struct {
	Name     string `db:"name"`
	Version  int    `db:"version"`
	Position int    `db:"position"`
	Body     []byte `db:"body"`
}

// StoredRule is a transition rule as stored.
type StoredRule struct {
	Name      string   `db:"name"`
	Version   int      `db:"version"`
	Position  int      `db:"position"`
	From      []string `db:"from_stages"`
	To        string   `db:"to_stage"`
	Condition string   `db:"condition"`
}

// RuleInfo is a stored rule with its place and time.
type RuleInfo struct {
	Name      string    `json:"name" db:"name"`
	Version   int       `json:"version" db:"version"`
	Position  int       `json:"position" db:"position"` // in the order rules are tried, from 1
	From      []string  `json:"from" db:"from_stages"`
	To        string    `json:"to" db:"to_stage"`
	Condition string    `json:"when" db:"condition"`
	UpdatedAt time.Time `json:"updated_at" db:"updated_at"`
}

// Named is a stored definition (template, sequence, offer) with its
// version.
type Named struct {
	Name       string          `json:"name" db:"name"`
	Version    int             `json:"version" db:"version"`
	Definition json.RawMessage `json:"definition" db:"definition"`
	UpdatedAt  time.Time       `json:"updated_at" db:"updated_at"`
}

// ErrNotFound is returned for a definition (a template, …) the stored
// journey does not have.
var ErrNotFound = errors.New("not in the stored journey")
