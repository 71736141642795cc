package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
)

// Sequences, holds and sending settings: the campaigns' definitions as
// stored, loaded and applied.

// Definitions implements campaigns.Store.
func (s *Store) Definitions(ctx context.Context) (campaigns.Definitions, error) {
	var d campaigns.Definitions
	rows, err := s.db.Query(ctx, `SELECT name FROM paused_sequences ORDER BY name`)
	if err != nil {
		return d, translate(err, "loading paused sequences")
	}
	if d.Paused, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return d, translate(err, "loading paused sequences")
	}
	// A paused sequence enrols nobody: the runner does not see it.
	seqs, err := queryRows[versionedDefinition](ctx, s.db, `SELECT version, definition FROM sequences WHERE name NOT IN (SELECT name FROM paused_sequences) ORDER BY position`)
	if err != nil {
		return d, translate(err, "loading sequences")
	}
	for _, r := range seqs {
		var seq campaigns.Sequence
		if err := json.Unmarshal(r.Definition, &seq); err != nil {
			return d, translate(err, "loading sequences")
		}
		seq.Version = r.Version
		d.Sequences = append(d.Sequences, seq)
	}
	if d.Holds, err = queryRows[campaigns.Hold](ctx, s.db, `SELECT name, condition FROM holds ORDER BY position`); err != nil {
		return d, translate(err, "loading holds")
	}
	rows, err = s.db.Query(ctx, `SELECT definition FROM offers ORDER BY name`)
	if err != nil {
		return d, translate(err, "loading offers")
	}
	offers, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return d, translate(err, "loading offers")
	}
	for _, body := range offers {
		var o campaigns.Offer
		if err := json.Unmarshal(body, &o); err != nil {
			return d, translate(err, "loading offers")
		}
		d.Offers = append(d.Offers, o)
	}
	d.Settings = campaigns.DefaultSettings()
	var body []byte
	err = s.db.QueryRow(ctx, `SELECT definition FROM settings`).Scan(&body)
	if err == nil {
		err = json.Unmarshal(body, &d.Settings)
	}
	if err != nil && err != pgx.ErrNoRows {
		return d, translate(err, "loading settings")
	}
	d.Segments, err = s.Segments(ctx)
	return d, err
}

// versionedDefinition is a stored definition (JSON) with its version.
type versionedDefinition struct {
	Version    int    `db:"version"`
	Definition []byte `db:"definition"`
}

// SequenceVersion implements campaigns.Store.
func (s *Store) SequenceVersion(ctx context.Context, name string, version int) (campaigns.Sequence, error) {
	var (
		seq  campaigns.Sequence
		body []byte
	)
	if err := s.db.QueryRow(ctx, `SELECT definition FROM sequence_versions WHERE name = $1 AND version = $2`, name, version).Scan(&body); err != nil {
		return seq, translate(err, fmt.Sprintf("loading sequence %s version %d", name, version))
	}
	if err := json.Unmarshal(body, &seq); err != nil {
		return seq, err
	}
	seq.Version = version
	return seq, nil
}

// SequenceVersions implements campaigns' DependencyStore: every version of
// every sequence ever stored (enrolments continue on the version they
// entered), so that what old versions' goals and exits read is known.
func (s *Store) SequenceVersions(ctx context.Context) ([]campaigns.VersionRef, error) {
	out, err := queryRows[campaigns.VersionRef](ctx, s.db, `SELECT name, version FROM sequence_versions ORDER BY name, version`)
	return out, translate(err, "listing sequence versions")
}

// applySequences stores sequences; a changed sequence gets the next
// version, and enrolments in flight keep the version they entered (see
// docs/journeys.md, "Sequences": what apply does to enrolments in flight).
func applySequences(ctx context.Context, tx pgx.Tx, seqs []campaigns.Sequence) ([]journey.Change, error) {
	current, err := queryRows[journey.Stored](ctx, tx, `SELECT name, version, position, definition AS body FROM sequences FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading sequences")
	}
	next := make([]journey.Stored, len(seqs))
	for pos, s := range seqs {
		s.Version = 0
		body, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		next[pos] = journey.Stored{Name: s.Name, Position: pos, Body: body}
	}
	var changes []journey.Change
	for _, e := range journey.Diff(current, next) {
		switch e.Op {
		case journey.Moved:
			if _, err := tx.Exec(ctx, `UPDATE sequences SET position = $2 WHERE name = $1`, e.Name, e.Position); err != nil {
				return nil, translate(err, "reordering sequence "+e.Name)
			}
		case journey.Added, journey.Changed:
			var v int
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM sequence_versions WHERE name = $1`, e.Name).Scan(&v); err != nil {
				return nil, translate(err, "versioning sequence "+e.Name)
			}
			body := next[e.Index].Body
			if _, err := tx.Exec(ctx, `INSERT INTO sequence_versions (name, version, definition) VALUES ($1, $2, $3)`, e.Name, v, body); err != nil {
				return nil, translate(err, "versioning sequence "+e.Name)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO sequences (name, version, position, definition) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = excluded.position, definition = excluded.definition, updated_at = now()`,
				e.Name, v, e.Position, body); err != nil {
				return nil, translate(err, "saving sequence "+e.Name)
			}
			what := e.Op.String()
			if e.Op == journey.Changed {
				// Steps the new version no longer has are cancelled for
				// contacts already in the sequence; the rest continue on
				// the version they entered.
				n, err := cancelRemovedSteps(ctx, tx, seqs[e.Index])
				if err != nil {
					return nil, err
				}
				if n > 0 {
					what += fmt.Sprintf("; %d queued sends of removed steps cancelled", n)
				}
			}
			changes = append(changes, journey.Change{Kind: "sequence", Name: e.Name, What: what, Version: v})
		case journey.Removed:
			n := e.Name
			if _, err := tx.Exec(ctx, `DELETE FROM sequences WHERE name = $1`, n); err != nil {
				return nil, translate(err, "removing sequence "+n)
			}
			tag, err := tx.Exec(ctx, `UPDATE sends SET status = 'cancelled', delayed_reason = 'sequence removed from the journey', updated_at = now()
			WHERE sequence = $1 AND status = 'queued'`, n)
			if err != nil {
				return nil, translate(err, "removing sequence "+n)
			}
			if _, err := tx.Exec(ctx, `UPDATE enrolments SET status = 'cancelled', reason = 'sequence removed from the journey', ended_at = now()
			WHERE sequence = $1 AND status = 'active'`, n); err != nil {
				return nil, translate(err, "removing sequence "+n)
			}
			what := "removed"
			if tag.RowsAffected() > 0 {
				what += fmt.Sprintf("; %d queued sends cancelled", tag.RowsAffected())
			}
			changes = append(changes, journey.Change{Kind: "sequence", Name: n, What: what, Version: e.Version})
		}
	}
	return changes, nil
}

// cancelRemovedSteps cancels queued sends of steps (by template at a
// position) the new definition no longer has: a step is kept when the new
// version has a step with the same template at the same position.
func cancelRemovedSteps(ctx context.Context, tx pgx.Tx, s campaigns.Sequence) (int64, error) {
	templates := make([]string, len(s.Steps))
	for i, st := range s.Steps {
		templates[i] = st.Template
	}
	tag, err := tx.Exec(ctx, `UPDATE sends SET status = 'cancelled', delayed_reason = 'step removed by a journey change', updated_at = now()
		WHERE sequence = $1 AND status = 'queued'
		  AND (step >= cardinality($2::text[]) OR ($2::text[])[step + 1] <> template)`, s.Name, templates)
	if err != nil {
		return 0, translate(err, "cancelling removed steps of "+s.Name)
	}
	return tag.RowsAffected(), nil
}

// applyHolds stores the journey's holds, replaced as a whole when they
// differ.
func applyHolds(ctx context.Context, tx pgx.Tx, holds []campaigns.Hold) ([]journey.Change, error) {
	current, err := queryRows[campaigns.Hold](ctx, tx, `SELECT name, condition FROM holds ORDER BY position`)
	if err != nil {
		return nil, translate(err, "reading holds")
	}
	if slices.Equal(current, holds) {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM holds`); err != nil {
		return nil, translate(err, "saving holds")
	}
	for i, h := range holds {
		if _, err := tx.Exec(ctx, `INSERT INTO holds (name, position, condition) VALUES ($1, $2, $3)`, h.Name, i, h.When); err != nil {
			return nil, translate(err, "saving hold "+h.Name)
		}
	}
	return []journey.Change{{Kind: "holds", Name: "holds", What: "replaced"}}, nil
}

// applySettings stores the journey's sending settings when they differ.
func applySettings(ctx context.Context, tx pgx.Tx, s campaigns.Settings) ([]journey.Change, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var old []byte
	err = tx.QueryRow(ctx, `SELECT definition FROM settings`).Scan(&old)
	if err == nil && journey.SameJSON(old, body) {
		return nil, nil
	}
	if err != nil && err != pgx.ErrNoRows {
		return nil, translate(err, "reading settings")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO settings (id, definition) VALUES (true, $1)
		ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, updated_at = now()`, body); err != nil {
		return nil, translate(err, "saving settings")
	}
	return []journey.Change{{Kind: "settings", Name: "sending", What: "saved"}}, nil
}
