package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/webhook"
)

// applyWebhooks makes the journey's endpoints the stored ones, in the
// apply's transaction: new ones added, changed ones updated and enabled
// again (a changed endpoint starts afresh), removed ones deleted with
// their pending deliveries failed with the reason (what changed is
// journey.Diff's to say, an endpoint compared by its URL, events and
// secret).
func applyWebhooks(ctx context.Context, tx pgx.Tx, eps []webhook.Endpoint) ([]journey.Change, error) {
	type stored struct {
		Name      string   `db:"name"`
		URL       string   `db:"url"`
		Events    []string `db:"events"`
		SecretEnv string   `db:"secret_env"`
	}
	current, err := queryRows[stored](ctx, tx, `SELECT name, url, events, secret_env FROM webhook_endpoints`)
	if err != nil {
		return nil, translate(err, "reading webhooks")
	}
	body := func(url string, events []string, secretEnv string) []byte {
		if events == nil {
			events = []string{} // none and none listed are the same
		}
		b, _ := json.Marshal([]any{url, events, secretEnv})
		return b
	}
	old := make([]journey.Stored, len(current))
	for i, c := range current {
		old[i] = journey.Stored{Name: c.Name, Body: body(c.URL, c.Events, c.SecretEnv)}
	}
	next := make([]journey.Stored, len(eps))
	for i, e := range eps {
		next[i] = journey.Stored{Name: e.Name, Body: body(e.URL, e.Events, e.SecretEnv)}
	}
	var changes []journey.Change
	for _, d := range journey.Diff(old, next) {
		switch d.Op {
		case journey.Added, journey.Changed:
			e := eps[d.Index]
			if _, err := tx.Exec(ctx, `INSERT INTO webhook_endpoints (name, url, events, secret_env) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET url = excluded.url, events = excluded.events, secret_env = excluded.secret_env,
				failing_since = NULL, disabled_at = NULL, updated_at = now()`, e.Name, e.URL, e.Events, e.SecretEnv); err != nil {
				return nil, translate(err, "saving webhook "+e.Name)
			}
			changes = append(changes, journey.Change{Kind: "webhook", Name: e.Name, What: d.Op.String()})
		case journey.Removed:
			// Its batches become deliveries first, failed with the rest.
			if _, err := tx.Exec(ctx, sqlExpandBatches, math.MaxInt32, d.Name); err != nil {
				return nil, translate(err, "failing a removed webhook's deliveries")
			}
			if _, err := tx.Exec(ctx, `UPDATE webhook_outbox SET status = 'failed', last_error = 'the endpoint was removed from the journey', claimed_by = NULL
			WHERE status = 'pending' AND endpoint = $1`, d.Name); err != nil {
				return nil, translate(err, "failing a removed webhook's deliveries")
			}
			if _, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE name = $1`, d.Name); err != nil {
				return nil, translate(err, "removing webhook "+d.Name)
			}
			changes = append(changes, journey.Change{Kind: "webhook", Name: d.Name, What: "removed"})
		}
	}
	return changes, nil
}

// sqlQueueWebhooks queues, in a change's own transaction, a delivery of
// each event of type $1 (the JSON objects $3, that happened at $2) to
// every enabled endpoint that wants it: nothing is written when none
// does, at the cost of one probe of a small table. (Stage moves,
// enrolments and the ends of sends build theirs in their own statements,
// from the rows they write.)
const sqlQueueWebhooks = `INSERT INTO webhook_outbox (endpoint, type, body, due_at)
	SELECT e.name, $1::text, jsonb_build_object('type', $1::text, 'timestamp', x.at, 'data', x.data), x.at
	FROM webhook_endpoints e CROSS JOIN unnest($2::timestamptz[], $3::jsonb[]) AS x(at, data)
	WHERE $1::text = ANY(e.events) AND e.disabled_at IS NULL`

// webhookEvents gathers a transaction's events by type, to be queued
// with one statement a type (sqlQueueWebhooks).
type webhookEvents struct {
	types []string
	ats   map[string][]time.Time
	data  map[string][][]byte
}

func (w *webhookEvents) add(typ string, at time.Time, data []byte) {
	if w.data == nil {
		w.ats, w.data = map[string][]time.Time{}, map[string][][]byte{}
	}
	if _, ok := w.data[typ]; !ok {
		w.types = append(w.types, typ)
	}
	w.ats[typ], w.data[typ] = append(w.ats[typ], at), append(w.data[typ], data)
}

// queue queues the gathered events in tx.
func (w *webhookEvents) queue(ctx context.Context, tx pgx.Tx) error {
	for _, typ := range w.types {
		if _, err := tx.Exec(ctx, sqlQueueWebhooks, typ, w.ats[typ], w.data[typ]); err != nil {
			return err
		}
	}
	return nil
}

// event is one webhook event's data, as JSON.
func event(fields map[string]any) []byte {
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err) // maps of plain values always marshal
	}
	return b
}

// sqlExpandBatches turns up to $1 batches of stage moves (oldest first;
// only endpoint $2's when $2 is not NULL) into a stage_changed delivery
// each, in order, with the contact's user id and email as they are now,
// and removes the batches, in one statement: a batch is expanded once,
// whoever expands it (another expansion of the same batches waits, then
// finds them gone: an apply removing the endpoint never misses one a
// deliverer is expanding). A move erased since (its contact erased) is not
// delivered.
const sqlExpandBatches = `
WITH b AS (
    DELETE FROM webhook_batches WHERE id IN (
        SELECT id FROM webhook_batches WHERE $2::text IS NULL OR endpoint = $2
        ORDER BY id LIMIT $1 FOR UPDATE)
    RETURNING *
)
INSERT INTO webhook_outbox (endpoint, type, body, due_at)
SELECT b.endpoint, b.type, jsonb_build_object('type', 'stage_changed', 'timestamp', t.at, 'data', jsonb_build_object(
        'contact_id', t.contact_id, 'user_id', k.user_id, 'email', k.email,
        'from', t.from_stage, 'to', t.to_stage, 'rule', t.rule, 'at', t.at)), t.at
FROM b CROSS JOIN LATERAL unnest(b.contact_ids, b.seqs) WITH ORDINALITY AS u(contact_id, seq, n)
JOIN transitions t ON t.contact_id = u.contact_id AND t.seq = u.seq
LEFT JOIN contacts k ON k.id = u.contact_id
ORDER BY b.id, u.n`

// ExpandWebhookBatches implements webhook.Outbox: up to limit batches of
// deliveries become a delivery row each; it returns how many deliveries.
func (s *Store) ExpandWebhookBatches(ctx context.Context, limit int) (int64, error) {
	tag, err := s.db.Exec(ctx, sqlExpandBatches, limit, nil)
	return tag.RowsAffected(), translate(err, "expanding webhook batches")
}

// ClaimDeliveries implements webhook.Outbox.
func (s *Store) ClaimDeliveries(ctx context.Context, holder string, limit int, now time.Time, lease time.Duration) ([]webhook.Delivery, error) {
	// The claim reads each delivery's endpoint as applied (a removed one's
	// deliveries have failed with the apply, a disabled one's wait).
	type row struct {
		ID        int64     `db:"id"`
		MsgID     string    `db:"msg_id"`
		Endpoint  string    `db:"endpoint"`
		Type      string    `db:"type"`
		Body      string    `db:"body"`
		Attempts  int       `db:"attempts"`
		Created   time.Time `db:"created_at"`
		URL       string    `db:"url"`
		SecretEnv string    `db:"secret_env"`
	}
	var out []webhook.Delivery
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// The claim walks the pending deliveries in due order and stops at
		// limit. The planner, on statistics taken before a sweep queued a
		// million, would otherwise read every pending one for each claim
		// and sort them (670 ms a claim of 16, 24 deliveries a second, at
		// 1M: waymark-bench webhooks; 6 ms this way).
		if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
			return err
		}
		var err error
		out, err = collectAs(ctx, tx, `UPDATE webhook_outbox o SET claimed_by = $1, claimed_until = $3::timestamptz + $4::interval
		FROM webhook_endpoints e
		WHERE e.name = o.endpoint AND o.id = ANY(ARRAY(
			SELECT w.id FROM webhook_outbox w JOIN webhook_endpoints x ON x.name = w.endpoint AND x.disabled_at IS NULL
			WHERE w.status = 'pending' AND w.due_at <= $3 AND (w.claimed_until IS NULL OR w.claimed_until < $3)
			ORDER BY w.due_at LIMIT $2 FOR UPDATE OF w SKIP LOCKED))
		RETURNING o.id, 'msg_' || o.id AS msg_id, o.endpoint, o.type, o.body::text AS body, o.attempts, o.created_at, e.url, e.secret_env`,
			[]any{holder, limit, now, lease}, func(r row) (webhook.Delivery, error) {
				return webhook.Delivery{ID: r.ID, MsgID: r.MsgID, Endpoint: r.Endpoint, Type: r.Type, Body: []byte(r.Body), Attempts: r.Attempts, Created: r.Created,
					URL: r.URL, SecretEnv: r.SecretEnv}, nil
			})
		return err
	})
	return out, translate(err, "claiming webhook deliveries")
}

// RecordDeliveries implements webhook.Outbox: the attempts' ends in one
// transaction, and each endpoint's health: a success clears its failing
// time; a failure starts it; failing for disableAfter disables it.
func (s *Store) RecordDeliveries(ctx context.Context, rs []webhook.Result, disableAfter time.Duration) error {
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	ids, statuses, errs, eps := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	next, at := make([]time.Time, n), make([]time.Time, n)
	codes := make([]int32, n)
	lat := make([]float64, n)
	for i, r := range rs {
		ids[i], statuses[i], errs[i], eps[i], at[i] = r.ID, r.Status, r.Error, r.Endpoint, r.At
		next[i], codes[i], lat[i] = r.NextAt, int32(r.HTTPStatus), float64(r.Latency.Microseconds())/1000
		if r.Status != "retry" {
			next[i] = r.At
		}
	}
	return s.inTx(ctx, "recording webhook deliveries", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE webhook_outbox o SET
				status = CASE WHEN v.status = 'retry' THEN 'pending' ELSE v.status END,
				attempts = o.attempts + 1, due_at = v.next, claimed_by = NULL, claimed_until = NULL,
				last_status = nullif(v.code, 0), last_error = coalesce(nullif(v.err, ''), o.last_error), latency_ms = v.lat,
				delivered_at = CASE WHEN v.status = 'delivered' THEN v.at END
			FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::text[], $6::float8[], $7::timestamptz[]) AS v(id, status, next, code, err, lat, at)
			WHERE o.id = v.id`, ids, statuses, next, codes, errs, lat, at); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `WITH r AS (
				SELECT endpoint, bool_or(status = 'delivered') AS ok, min(at) AS first FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS r(endpoint, status, at) GROUP BY endpoint)
			UPDATE webhook_endpoints e SET
				failing_since = CASE WHEN r.ok THEN NULL ELSE coalesce(e.failing_since, r.first) END,
				disabled_at = CASE WHEN NOT r.ok AND coalesce(e.failing_since, r.first) < r.first - $4::interval THEN r.first ELSE e.disabled_at END
			FROM r WHERE e.name = r.endpoint`, eps, statuses, at, disableAfter)
		return err
	})
}

// WebhookEndpoints lists the endpoints with their figures.
func (s *Store) WebhookEndpoints(ctx context.Context) ([]webhook.EndpointStatus, error) {
	out, err := queryRows[webhook.EndpointStatus](ctx, s.db, `SELECT e.name, e.url, e.events, e.secret_env, e.failing_since, e.disabled_at,
			count(*) FILTER (WHERE o.status = 'pending') AS pending,
			count(*) FILTER (WHERE o.status = 'delivered') AS delivered,
			count(*) FILTER (WHERE o.status = 'failed') AS failed,
			(SELECT l.last_error FROM webhook_outbox l WHERE l.endpoint = e.name AND l.last_error IS NOT NULL ORDER BY l.id DESC LIMIT 1) AS last_error
		FROM webhook_endpoints e LEFT JOIN webhook_outbox o ON o.endpoint = e.name
		GROUP BY e.name ORDER BY e.name`)
	return out, translate(err, "listing webhooks")
}

// WebhookDeliveries is an endpoint's log, newest first, before the
// delivery id before (0: from the newest), limit at a time.
func (s *Store) WebhookDeliveries(ctx context.Context, endpoint string, before int64, limit int) ([]webhook.LogEntry, error) {
	out, err := queryRows[webhook.LogEntry](ctx, s.db, `SELECT id, 'msg_' || id AS msg_id, type, status, attempts, last_status, last_error, latency_ms, created_at, delivered_at, body
		FROM webhook_outbox WHERE endpoint = $1 AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3`, endpoint, before, limit)
	return out, translate(err, "reading webhook deliveries")
}

// QueueWebhookTest queues a webhook.test event to the endpoint (the
// "send test event" action), and enables it again if it was disabled;
// webhook.ErrNoEndpoint (and ErrNotFound) if the journey has none of that
// name.
func (s *Store) QueueWebhookTest(ctx context.Context, endpoint string, at time.Time) (int64, error) {
	var id int64
	err := s.inTx(ctx, "queueing a test webhook", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET disabled_at = NULL, failing_since = NULL WHERE name = $1`, endpoint)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return notFoundErr{webhook.ErrNoEndpoint}
		}
		return tx.QueryRow(ctx, `INSERT INTO webhook_outbox (endpoint, type, body, due_at)
			VALUES ($1, 'webhook.test', jsonb_build_object('type', 'webhook.test', 'timestamp', $2::timestamptz, 'data', jsonb_build_object('endpoint', $1::text)), $2)
			RETURNING id`, endpoint, at).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("webhook %s: %w", endpoint, err)
	}
	return id, nil
}
