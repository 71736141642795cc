package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Stage moves: contacts moved by the rules, and each hop recorded.

const sqlApplyMoves = `
WITH v AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[])
        AS v(id, expect_stage, expect_entered, final_stage, at)
), moved AS (
    UPDATE contacts c SET stage = v.final_stage, stage_entered_at = v.at, updated_at = now()
    FROM v
    WHERE c.id = v.id AND c.stage = v.expect_stage AND c.stage_entered_at = v.expect_entered
    RETURNING c.id
), ins AS (
    INSERT INTO transitions (contact_id, from_stage, to_stage, rule, rule_version, observed, trigger, at)
    SELECT h.id, h.from_stage, h.to_stage, h.rule, h.version, h.observed, h.trigger, h.at
    FROM unnest($6::bigint[], $7::text[], $8::text[], $9::text[], $10::int[], $11::jsonb[], $12::text[], $13::timestamptz[], $14::int[])
        AS h(id, from_stage, to_stage, rule, version, observed, trigger, at, ord)
    WHERE h.id IN (SELECT id FROM moved)
    ORDER BY h.id, h.ord
    RETURNING contact_id, seq, from_stage, to_stage, rule, at
), hooks AS (
    -- Webhooks out: for each endpoint that wants stage_changed, one batch
    -- naming this statement's moves, in the move's own statement (nothing
    -- when no endpoint does); the deliverer expands it into a delivery
    -- each, with its body (ExpandWebhookBatches).
    INSERT INTO webhook_batches (endpoint, type, contact_ids, seqs, due_at)
    SELECT e.name, 'stage_changed', array_agg(i.contact_id ORDER BY i.contact_id, i.seq), array_agg(i.seq ORDER BY i.contact_id, i.seq), min(i.at)
    FROM webhook_endpoints e JOIN ins i ON true
    WHERE 'stage_changed' = ANY(e.events) AND e.disabled_at IS NULL
    GROUP BY e.name
)
SELECT contact_id FROM ins`

// ApplyMoves implements lifecycle.Store: in one statement, each contact
// moves only if it is still in the stage, entered at the time, that the
// evaluation saw, and its hops are recorded in order. A contact another
// evaluator moved in between is left alone.
func (s *Store) ApplyMoves(ctx context.Context, moves []lifecycle.ContactMoves) (int, error) {
	var (
		ids, hIDs                         []int64
		expStage, finals                  []string
		expAt, ats, hAts                  []time.Time
		hFrom, hTo, hRule, hObs, hTrigger []string
		hVer, hOrd                        []int32
	)
	// Contacts are locked in id order whoever moves them (the reactor,
	// the sweep), so two passes over the same contacts wait for each
	// other instead of deadlocking.
	moves = slices.Clone(moves)
	slices.SortFunc(moves, func(a, b lifecycle.ContactMoves) int { return cmp.Compare(a.ID, b.ID) })
	for _, m := range moves {
		if len(m.Moves) == 0 {
			continue
		}
		ids = append(ids, m.ID)
		expStage = append(expStage, string(m.ExpectStage))
		expAt = append(expAt, m.ExpectEnteredAt)
		finals = append(finals, string(m.Moves[len(m.Moves)-1].To))
		ats = append(ats, m.At)
		for i, h := range m.Moves {
			obs, err := observedJSON(h.Observed)
			if err != nil {
				return 0, err
			}
			hIDs = append(hIDs, m.ID)
			hFrom = append(hFrom, string(h.From))
			hTo = append(hTo, string(h.To))
			hRule = append(hRule, h.Rule)
			hVer = append(hVer, int32(h.Version))
			hObs = append(hObs, obs)
			hTrigger = append(hTrigger, m.Trigger)
			hAts = append(hAts, m.At)
			hOrd = append(hOrd, int32(i))
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	moved := map[int64]bool{}
	// Probed by key, and not compiled (it queues the moves' webhooks: see
	// sqlProbesOnly).
	err := s.withSettings(ctx, sqlProbesOnly, func(db DB) error {
		rows, err := db.Query(ctx, sqlApplyMoves, ids, expStage, expAt, finals, ats,
			hIDs, hFrom, hTo, hRule, hVer, hObs, hTrigger, hAts, hOrd)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		for _, id := range ids {
			moved[id] = true
		}
		return err
	})
	return len(moved), translate(err, "applying stage moves")
}

// observedJSON renders what a rule saw as a JSON object keyed by the
// expression ({"count(\"order_completed\", \"all\")": 3}). Infinity (a
// days_since of something that never happened) is written as the string
// "never", which JSON can carry.
func observedJSON(obs []rule.Observation) (string, error) {
	m := make(map[string]any, len(obs))
	for _, o := range obs {
		v := o.Value
		if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
			v = "never"
		}
		m[o.Expr] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("recording what a rule saw: %w", err)
	}
	return string(b), nil
}
