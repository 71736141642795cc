package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// A statement of stage moves writes one batch of stage_changed deliveries
// per endpoint that wants them, in its transaction; the deliverer's
// expansion turns it into a delivery each, in order, with the body each
// would have had, once (a second expansion finds nothing); a removed
// endpoint's batches become deliveries failed with the rest of its own.
func TestStageMovesQueueWebhooksInBatches(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := store.New(pool)
	ctx := context.Background()
	now := clock.Now().UTC().Truncate(time.Second)
	applyJourney(t, s, ladder+`webhooks:
  - {name: crm, url: "https://crm.example/hooks", events: [stage_changed], secret_env: CRM_SECRET}
  - {name: data, url: "https://data.example/hooks", events: [stage_changed, enrolled], secret_env: DATA_SECRET}
  - {name: other, url: "https://other.example/hooks", events: [enrolled], secret_env: OTHER_SECRET}
`)
	var moves []lifecycle.ContactMoves
	for id := int64(3); id >= 1; id-- {
		if _, err := pool.Exec(ctx, `INSERT INTO contacts (id, user_id, email, stage, stage_entered_at, created_at) VALUES ($1, $2, $3, 'awareness', $4, $4)`,
			id, fmt.Sprintf("u%d", id), fmt.Sprintf("c%d@example.com", id), now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		moves = append(moves, lifecycle.ContactMoves{ID: id, ExpectStage: rule.Awareness, ExpectEnteredAt: now.Add(-time.Hour), At: now, Trigger: "sweep",
			Moves: []lifecycle.Move{{From: rule.Awareness, To: rule.Consideration, Rule: "visitor", Version: 1}}})
	}
	if n, err := s.ApplyMoves(ctx, moves); err != nil || n != 3 {
		t.Fatalf("ApplyMoves: %d, %v", n, err)
	}
	one := func(sql string) string {
		t.Helper()
		var v string
		if err := pool.QueryRow(ctx, sql).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	if got := one(`SELECT string_agg(endpoint || ' ' || cardinality(seqs), ', ' ORDER BY endpoint) || ' | outbox ' || (SELECT count(*) FROM webhook_outbox) FROM webhook_batches`); got != "crm 3, data 3 | outbox 0" {
		t.Fatalf("batches: %s", got)
	}
	if n, err := s.ExpandWebhookBatches(ctx, 4); err != nil || n != 6 {
		t.Fatalf("expand: %d, %v; want 6 deliveries", n, err)
	}
	if n, err := s.ExpandWebhookBatches(ctx, 4); err != nil || n != 0 {
		t.Fatalf("expand again: %d, %v; want nothing", n, err)
	}
	want := []string{}
	for _, id := range []int{1, 2, 3} {
		want = append(want, fmt.Sprintf(`crm pending {"data": {"at": "%[2]s", "to": "consideration", "from": "awareness", "rule": "visitor", "email": "c%[1]d@example.com", "user_id": "u%[1]d", "contact_id": %[1]d}, "type": "stage_changed", "timestamp": "%[2]s"}`,
			id, now.Format("2006-01-02T15:04:05+00:00")))
	}
	got := one(`SELECT string_agg(endpoint || ' ' || status || ' ' || body::text, E'\n' ORDER BY id) FROM webhook_outbox WHERE endpoint = 'crm'`)
	if got != strings.Join(want, "\n") {
		t.Errorf("crm's deliveries:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}

	// Another statement's batch, then crm is removed: its batch is failed
	// with its deliveries, data's stays to be delivered.
	if _, err := pool.Exec(ctx, `INSERT INTO contacts (id, email, stage, stage_entered_at, created_at) VALUES (4, 'c4@example.com', 'awareness', $1, $1)`, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyMoves(ctx, []lifecycle.ContactMoves{{ID: 4, ExpectStage: rule.Awareness, ExpectEnteredAt: now.Add(-time.Hour), At: now, Trigger: "sweep",
		Moves: []lifecycle.Move{{From: rule.Awareness, To: rule.Consideration, Rule: "visitor", Version: 1}}}}); err != nil {
		t.Fatal(err)
	}
	applyJourney(t, s, ladder+`webhooks:
  - {name: data, url: "https://data.example/hooks", events: [stage_changed, enrolled], secret_env: DATA_SECRET}
`)
	if got := one(`SELECT string_agg(endpoint || ' ' || status || ' ' || n, ', ' ORDER BY endpoint, status) FROM (SELECT endpoint, status, count(*) AS n FROM webhook_outbox GROUP BY 1, 2) x`); got != "crm failed 4, data pending 3" {
		t.Errorf("after removing crm: %s", got)
	}
	if got := one(`SELECT string_agg(endpoint || ' ' || cardinality(seqs), ', ') FROM webhook_batches`); got != "data 1" {
		t.Errorf("batches left: %s", got)
	}
}
