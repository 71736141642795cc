package store

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/templates"
)

type templateJSON struct {
	Base  templates.Content            `json:"base"`
	Tones map[string]templates.Content `json:"tones,omitempty"`
}

func applyTemplates(ctx context.Context, tx pgx.Tx, ts []templates.Template) ([]Change, error) {
	rows, err := tx.Query(ctx, `SELECT name, version, content FROM templates FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading templates")
	}
	type cur struct {
		version int
		content []byte
	}
	current := map[string]cur{}
	var (
		name    string
		version int
		content []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &version, &content}, func() error {
		current[name] = cur{version, append([]byte(nil), content...)}
		return nil
	}); err != nil {
		return nil, translate(err, "reading templates")
	}
	var changes []Change
	keep := map[string]bool{}
	for _, t := range ts {
		keep[t.Name] = true
		body, err := json.Marshal(templateJSON{Base: t.Base, Tones: t.Tones})
		if err != nil {
			return nil, err
		}
		old, exists := current[t.Name]
		if exists && jsonEqual(old.content, body) {
			continue
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM template_versions WHERE name = $1`, t.Name).Scan(&v); err != nil {
			return nil, translate(err, "versioning template "+t.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO template_versions (name, version, content) VALUES ($1, $2, $3)`, t.Name, v, body); err != nil {
			return nil, translate(err, "versioning template "+t.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO templates (name, version, content) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, content = excluded.content, updated_at = now()`, t.Name, v, body); err != nil {
			return nil, translate(err, "saving template "+t.Name)
		}
		what := "added"
		if exists {
			what = "changed"
		}
		changes = append(changes, Change{Kind: "template", Name: t.Name, What: what, Version: v})
	}
	for n, c := range current {
		if keep[n] {
			continue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM templates WHERE name = $1`, n); err != nil {
			return nil, translate(err, "removing template "+n)
		}
		changes = append(changes, Change{Kind: "template", Name: n, What: "removed", Version: c.version})
	}
	return changes, nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func applyTones(ctx context.Context, tx pgx.Tx, tones []journey.ToneRule) ([]Change, error) {
	rows, err := tx.Query(ctx, `SELECT tone, coalesce(condition, '') FROM tone_rules ORDER BY position`)
	if err != nil {
		return nil, translate(err, "reading tone rules")
	}
	type tr struct{ Tone, When string }
	current, err := pgx.CollectRows(rows, pgx.RowToStructByPos[tr])
	if err != nil {
		return nil, translate(err, "reading tone rules")
	}
	same := len(current) == len(tones)
	for i := 0; same && i < len(tones); i++ {
		same = current[i].Tone == tones[i].Tone && current[i].When == tones[i].When
	}
	if same {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM tone_rules`); err != nil {
		return nil, translate(err, "saving tone rules")
	}
	for i, t := range tones {
		var cond *string
		if t.When != "" {
			cond = &t.When
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tone_rules (position, tone, condition) VALUES ($1, $2, $3)`, i, t.Tone, cond); err != nil {
			return nil, translate(err, "saving tone rules")
		}
	}
	return []Change{{Kind: "tones", Name: "tone rules", What: "replaced"}}, nil
}

// ToneRules returns the tone rules in order (campaigns.SendStore).
func (s *Store) ToneRules(ctx context.Context) ([]templates.ToneRuleSource, error) {
	rows, err := s.db.Query(ctx, `SELECT tone, coalesce(condition, '') FROM tone_rules ORDER BY position`)
	if err != nil {
		return nil, translate(err, "reading tone rules")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[templates.ToneRuleSource])
	return out, translate(err, "reading tone rules")
}

// Template returns a stored template and its version.
func (s *Store) Template(ctx context.Context, name string) (templates.Template, int, error) {
	var (
		v    int
		body []byte
	)
	if err := s.db.QueryRow(ctx, `SELECT version, content FROM templates WHERE name = $1`, name).Scan(&v, &body); err != nil {
		return templates.Template{}, 0, translate(err, "reading template "+name)
	}
	var tj templateJSON
	if err := json.Unmarshal(body, &tj); err != nil {
		return templates.Template{}, 0, err
	}
	return templates.Template{Name: name, Base: tj.Base, Tones: tj.Tones}, v, nil
}
