package webhook

import (
	"encoding/json"
	"errors"
	"time"
)

// ErrNoEndpoint is returned for an endpoint the stored journey does not
// have.
var ErrNoEndpoint = errors.New("no such webhook in the journey")

// EndpointStatus is an endpoint with its delivery figures, as the API
// lists it.
type EndpointStatus struct {
	Name         string     `db:"name" json:"name"`
	URL          string     `db:"url" json:"url"`
	Events       []string   `db:"events" json:"events"`
	SecretEnv    string     `db:"secret_env" json:"secret_env"`
	FailingSince *time.Time `db:"failing_since" json:"failing_since"`
	DisabledAt   *time.Time `db:"disabled_at" json:"disabled_at"`
	Pending      int64      `db:"pending" json:"pending"`
	Delivered    int64      `db:"delivered" json:"delivered"`
	Failed       int64      `db:"failed" json:"failed"`
	LastError    *string    `db:"last_error" json:"last_error"`
}

// LogEntry is one delivery in an endpoint's log.
type LogEntry struct {
	ID          int64           `db:"id" json:"id"`
	MsgID       string          `db:"msg_id" json:"webhook_id"`
	Type        string          `db:"type" json:"type"`
	Status      string          `db:"status" json:"status"`
	Attempts    int             `db:"attempts" json:"attempts"`
	LastStatus  *int32          `db:"last_status" json:"last_status"`
	LastError   *string         `db:"last_error" json:"last_error"`
	LatencyMS   *float64        `db:"latency_ms" json:"latency_ms"`
	CreatedAt   time.Time       `db:"created_at" json:"created_at"`
	DeliveredAt *time.Time      `db:"delivered_at" json:"delivered_at"`
	Body        json.RawMessage `db:"body" json:"body"`
}
