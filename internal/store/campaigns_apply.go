package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
)

// applySequences stores sequences; a changed sequence gets the next
// version, and enrolments in flight keep the version they entered (see
// docs/journeys.md, "Sequences": what apply does to enrolments in flight).
func applySequences(ctx context.Context, tx pgx.Tx, seqs []campaigns.Sequence) ([]Change, error) {
	rows, err := tx.Query(ctx, `SELECT name, version, position, definition FROM sequences FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading sequences")
	}
	type cur struct {
		version, position int
		def               []byte
	}
	current := map[string]cur{}
	var (
		name          string
		version, posn int
		def           []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &version, &posn, &def}, func() error {
		current[name] = cur{version, posn, append([]byte(nil), def...)}
		return nil
	}); err != nil {
		return nil, translate(err, "reading sequences")
	}
	var changes []Change
	keep := map[string]bool{}
	for pos, s := range seqs {
		keep[s.Name] = true
		s.Version = 0
		body, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		old, exists := current[s.Name]
		if exists && jsonEqual(old.def, body) {
			if old.position != pos {
				if _, err := tx.Exec(ctx, `UPDATE sequences SET position = $2 WHERE name = $1`, s.Name, pos); err != nil {
					return nil, translate(err, "reordering sequence "+s.Name)
				}
			}
			continue
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM sequence_versions WHERE name = $1`, s.Name).Scan(&v); err != nil {
			return nil, translate(err, "versioning sequence "+s.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sequence_versions (name, version, definition) VALUES ($1, $2, $3)`, s.Name, v, body); err != nil {
			return nil, translate(err, "versioning sequence "+s.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sequences (name, version, position, definition) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, position = excluded.position, definition = excluded.definition, updated_at = now()`,
			s.Name, v, pos, body); err != nil {
			return nil, translate(err, "saving sequence "+s.Name)
		}
		what := "added"
		if exists {
			what = "changed"
			// Steps the new version no longer has are cancelled for
			// contacts already in the sequence; the rest continue on the
			// version they entered.
			n, err := cancelRemovedSteps(ctx, tx, s)
			if err != nil {
				return nil, err
			}
			if n > 0 {
				what += fmt.Sprintf("; %d queued sends of removed steps cancelled", n)
			}
		}
		changes = append(changes, Change{Kind: "sequence", Name: s.Name, What: what, Version: v})
	}
	for n, c := range current {
		if keep[n] {
			continue
		}
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
		changes = append(changes, Change{Kind: "sequence", Name: n, What: what, Version: c.version})
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

func applyHolds(ctx context.Context, tx pgx.Tx, holds []campaigns.Hold) ([]Change, error) {
	rows, err := tx.Query(ctx, `SELECT name, condition FROM holds ORDER BY position`)
	if err != nil {
		return nil, translate(err, "reading holds")
	}
	current, err := pgx.CollectRows(rows, pgx.RowToStructByPos[campaigns.Hold])
	if err != nil {
		return nil, translate(err, "reading holds")
	}
	same := len(current) == len(holds)
	for i := 0; same && i < len(holds); i++ {
		same = current[i] == holds[i]
	}
	if same {
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
	return []Change{{Kind: "holds", Name: "holds", What: "replaced"}}, nil
}

func applyOffers(ctx context.Context, tx pgx.Tx, offers []campaigns.Offer) ([]Change, error) {
	var changes []Change
	keep := []string{}
	for _, o := range offers {
		keep = append(keep, o.Name)
		codes := o.Codes
		o.Codes = nil // the pool lives in coupons
		body, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		var old []byte
		err = tx.QueryRow(ctx, `SELECT definition FROM offers WHERE name = $1`, o.Name).Scan(&old)
		exists := err == nil
		if err != nil && err != pgx.ErrNoRows {
			return nil, translate(err, "reading offer "+o.Name)
		}
		if !exists || !jsonEqual(old, body) {
			if _, err := tx.Exec(ctx, `INSERT INTO offers (name, definition) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = now()`, o.Name, body); err != nil {
				return nil, translate(err, "saving offer "+o.Name)
			}
			changes = append(changes, Change{Kind: "offer", Name: o.Name, What: map[bool]string{true: "changed", false: "added"}[exists]})
		}
		if len(codes) > 0 {
			tag, err := tx.Exec(ctx, `INSERT INTO coupons (offer, code) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, o.Name, codes)
			if err != nil {
				return nil, translate(err, "loading coupons of "+o.Name)
			}
			if tag.RowsAffected() > 0 {
				changes = append(changes, Change{Kind: "offer", Name: o.Name, What: fmt.Sprintf("%d coupon codes loaded", tag.RowsAffected())})
			}
		}
	}
	tag, err := tx.Exec(ctx, `DELETE FROM offers WHERE NOT (name = ANY($1::text[]))`, keep)
	if err != nil {
		return nil, translate(err, "removing offers")
	}
	if tag.RowsAffected() > 0 {
		changes = append(changes, Change{Kind: "offers", Name: "offers", What: fmt.Sprintf("%d removed", tag.RowsAffected())})
	}
	return changes, nil
}

func applySettings(ctx context.Context, tx pgx.Tx, s campaigns.Settings) ([]Change, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var old []byte
	err = tx.QueryRow(ctx, `SELECT definition FROM settings`).Scan(&old)
	if err == nil && jsonEqual(old, body) {
		return nil, nil
	}
	if err != nil && err != pgx.ErrNoRows {
		return nil, translate(err, "reading settings")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO settings (id, definition) VALUES (true, $1)
		ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, updated_at = now()`, body); err != nil {
		return nil, translate(err, "saving settings")
	}
	return []Change{{Kind: "settings", Name: "sending", What: "saved"}}, nil
}
