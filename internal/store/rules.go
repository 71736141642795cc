package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

const sqlRules = `SELECT name, version, position, from_stages, to_stage, condition FROM rules ORDER BY position, name`

// Rules implements lifecycle.Store: the active rules in evaluation order.
func (s *Store) Rules(ctx context.Context) ([]lifecycle.StoredRule, error) {
	stored, err := queryRows[journey.StoredRule](ctx, s.db, sqlRules)
	if err != nil {
		return nil, translate(err, "loading rules")
	}
	out := make([]lifecycle.StoredRule, len(stored))
	for i, r := range stored {
		out[i] = lifecycle.StoredRule{Name: r.Name, Version: r.Version, From: make([]rule.Stage, len(r.From)), To: rule.Stage(r.To), Condition: r.Condition}
		for j, f := range r.From {
			out[i].From[j] = rule.Stage(f)
		}
	}
	return out, nil
}

// applyRules stores the journey's transition rules: a rule added or
// changed gets its next version (the version it replaces retired), one
// moved in the evaluation order keeps its version.
func applyRules(ctx context.Context, tx pgx.Tx, rules []journey.Rule) ([]journey.Change, error) {
	current, err := queryRows[journey.StoredRule](ctx, tx, `SELECT name, version, position, from_stages, to_stage, condition FROM rules FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading rules")
	}
	var changes []journey.Change
	for _, e := range journey.DiffRules(current, rules) {
		switch e.Op {
		case journey.Moved:
			if _, err := tx.Exec(ctx, `UPDATE rules SET position = $2, updated_at = now() WHERE name = $1`, e.Name, e.Position); err != nil {
				return nil, translate(err, "reordering rule "+e.Name)
			}
			changes = append(changes, journey.Change{Kind: "rule", Name: e.Name, What: "moved in the evaluation order", Version: e.Version})
		case journey.Added, journey.Changed:
			r := rules[e.Index]
			from := journey.RuleFrom(r)
			var version int
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM rule_versions WHERE name = $1`, r.Name).Scan(&version); err != nil {
				return nil, translate(err, "versioning rule "+r.Name)
			}
			if _, err := tx.Exec(ctx, `UPDATE rule_versions SET retired_at = now() WHERE name = $1 AND retired_at IS NULL`, r.Name); err != nil {
				return nil, translate(err, "versioning rule "+r.Name)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO rule_versions (name, version, from_stages, to_stage, condition) VALUES ($1, $2, $3, $4, $5)`,
				r.Name, version, from, string(r.To), r.When); err != nil {
				return nil, translate(err, "versioning rule "+r.Name)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO rules (name, version, position, from_stages, to_stage, condition) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = excluded.position, from_stages = excluded.from_stages,
			to_stage = excluded.to_stage, condition = excluded.condition, updated_at = now()`,
				r.Name, version, e.Position, from, string(r.To), r.When); err != nil {
				return nil, translate(err, "saving rule "+r.Name)
			}
			changes = append(changes, journey.Change{Kind: "rule", Name: r.Name, What: e.Op.String(), Version: version})
		case journey.Removed:
			if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE name = $1`, e.Name); err != nil {
				return nil, translate(err, "removing rule "+e.Name)
			}
			if _, err := tx.Exec(ctx, `UPDATE rule_versions SET retired_at = now() WHERE name = $1 AND retired_at IS NULL`, e.Name); err != nil {
				return nil, translate(err, "removing rule "+e.Name)
			}
			changes = append(changes, journey.Change{Kind: "rule", Name: e.Name, What: "removed", Version: e.Version})
		}
	}
	return changes, nil
}

// SaveRule stores one rule's new definition the way apply does: under the
// journey lock, with the next version when its from, to or condition
// changed (its place in the order kept; a new rule goes last). The
// condition must have been compiled by the caller.
func (s *Store) SaveRule(ctx context.Context, r journey.Rule) ([]journey.Change, error) {
	var changes []journey.Change
	err := s.inTx(ctx, "saving rule "+r.Name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlJourneyLock); err != nil {
			return err
		}
		current, err := queryRows[journey.StoredRule](ctx, tx, `SELECT name, version, position, from_stages, to_stage, condition FROM rules ORDER BY position, name`)
		if err != nil {
			return err
		}
		changes, err = applyRules(ctx, tx, journey.WithRule(current, r))
		return err
	})
	return changes, err
}

// RuleInfos returns the rules in evaluation order.
func (s *Store) RuleInfos(ctx context.Context) ([]journey.RuleInfo, error) {
	out, err := queryRows[journey.RuleInfo](ctx, s.db, `SELECT name, version, position + 1 AS position, from_stages, to_stage, condition, updated_at FROM rules ORDER BY position, name`)
	return out, translate(err, "reading rules")
}
