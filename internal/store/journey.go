package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/journey"
)

// Change is one difference a journey apply made (or, in a dry run, would
// make).
type Change struct {
	Kind    string // rule, …
	Name    string
	What    string // added, changed, removed, reordered
	Version int
}

func (c Change) String() string {
	if c.Version > 0 {
		return fmt.Sprintf("%s %q %s (version %d)", c.Kind, c.Name, c.What, c.Version)
	}
	return fmt.Sprintf("%s %q %s", c.Kind, c.Name, c.What)
}

// ApplyJourney stores a checked journey atomically: all of it or, on any
// error, nothing. Applying the same journey again changes nothing; a rule
// whose from, to or condition changed gets the next version. With dryRun
// the transaction is rolled back and the changes are only reported.
func (s *Store) ApplyJourney(ctx context.Context, j *journey.Journey, dryRun bool) ([]Change, error) {
	var changes []Change
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, translate(err, "applying the journey")
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// One apply at a time, so versions are assigned once.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7243)"); err != nil {
		return nil, translate(err, "applying the journey")
	}
	for _, apply := range []func() ([]Change, error){
		func() ([]Change, error) { return applyRules(ctx, tx, j.Rules) },
		func() ([]Change, error) { return applyTones(ctx, tx, j.Tones) },
		func() ([]Change, error) { return applyTemplates(ctx, tx, j.Templates) },
		func() ([]Change, error) { return applySequences(ctx, tx, j.Sequences) },
		func() ([]Change, error) { return applyHolds(ctx, tx, j.Holds) },
		func() ([]Change, error) { return applyOffers(ctx, tx, j.Offers) },
		func() ([]Change, error) { return applySettings(ctx, tx, j.Settings) },
		func() ([]Change, error) { return applyWebhooks(ctx, tx, j.Webhooks) },
	} {
		c, err := apply()
		if err != nil {
			return nil, err
		}
		changes = append(changes, c...)
	}
	if dryRun {
		return changes, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, translate(err, "applying the journey")
	}
	return changes, nil
}

type storedRule struct {
	Name      string
	Version   int
	Position  int
	From      []string
	To        string
	Condition string
}

func applyRules(ctx context.Context, tx pgx.Tx, rules []journey.Rule) ([]Change, error) {
	rows, err := tx.Query(ctx, `SELECT name, version, position, from_stages, to_stage, condition FROM rules FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading rules")
	}
	current, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storedRule])
	if err != nil {
		return nil, translate(err, "reading rules")
	}
	byName := map[string]storedRule{}
	for _, r := range current {
		byName[r.Name] = r
	}
	var changes []Change
	keep := map[string]bool{}
	for pos, r := range rules {
		keep[r.Name] = true
		from := make([]string, len(r.From))
		for i, f := range r.From {
			from[i] = string(f)
		}
		old, exists := byName[r.Name]
		same := exists && slices.Equal(old.From, from) && old.To == string(r.To) && old.Condition == r.When
		switch {
		case same && old.Position == pos:
			continue
		case same:
			if _, err := tx.Exec(ctx, `UPDATE rules SET position = $2, updated_at = now() WHERE name = $1`, r.Name, pos); err != nil {
				return nil, translate(err, "reordering rule "+r.Name)
			}
			changes = append(changes, Change{Kind: "rule", Name: r.Name, What: "moved in the evaluation order", Version: old.Version})
			continue
		}
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
			r.Name, version, pos, from, string(r.To), r.When); err != nil {
			return nil, translate(err, "saving rule "+r.Name)
		}
		what := "added"
		if exists {
			what = "changed"
		}
		changes = append(changes, Change{Kind: "rule", Name: r.Name, What: what, Version: version})
	}
	for _, r := range current {
		if keep[r.Name] {
			continue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE name = $1`, r.Name); err != nil {
			return nil, translate(err, "removing rule "+r.Name)
		}
		if _, err := tx.Exec(ctx, `UPDATE rule_versions SET retired_at = now() WHERE name = $1 AND retired_at IS NULL`, r.Name); err != nil {
			return nil, translate(err, "removing rule "+r.Name)
		}
		changes = append(changes, Change{Kind: "rule", Name: r.Name, What: "removed", Version: r.Version})
	}
	return changes, nil
}
