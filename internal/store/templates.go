package store

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/templates"
)

// Templates and tone rules, as stored.

type templateJSON struct {
	Base  templates.Content            `json:"base"`
	Tones map[string]templates.Content `json:"tones,omitempty"`
}

// applyTemplates stores the journey's templates: one added or changed
// gets its next version.
func applyTemplates(ctx context.Context, tx pgx.Tx, ts []templates.Template) ([]journey.Change, error) {
	current, err := queryRows[journey.Stored](ctx, tx, `SELECT name, version, 0 AS position, content AS body FROM templates FOR UPDATE`)
	if err != nil {
		return nil, translate(err, "reading templates")
	}
	next := make([]journey.Stored, len(ts))
	for i, t := range ts {
		body, err := json.Marshal(templateJSON{Base: t.Base, Tones: t.Tones})
		if err != nil {
			return nil, err
		}
		next[i] = journey.Stored{Name: t.Name, Body: body}
	}
	var changes []journey.Change
	for _, e := range journey.Diff(current, next) {
		switch e.Op {
		case journey.Added, journey.Changed:
			var v int
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM template_versions WHERE name = $1`, e.Name).Scan(&v); err != nil {
				return nil, translate(err, "versioning template "+e.Name)
			}
			body := next[e.Index].Body
			if _, err := tx.Exec(ctx, `INSERT INTO template_versions (name, version, content) VALUES ($1, $2, $3)`, e.Name, v, body); err != nil {
				return nil, translate(err, "versioning template "+e.Name)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO templates (name, version, content) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, content = excluded.content, updated_at = now()`, e.Name, v, body); err != nil {
				return nil, translate(err, "saving template "+e.Name)
			}
			changes = append(changes, journey.Change{Kind: "template", Name: e.Name, What: e.Op.String(), Version: v})
		case journey.Removed:
			if _, err := tx.Exec(ctx, `DELETE FROM templates WHERE name = $1`, e.Name); err != nil {
				return nil, translate(err, "removing template "+e.Name)
			}
			changes = append(changes, journey.Change{Kind: "template", Name: e.Name, What: "removed", Version: e.Version})
		}
	}
	return changes, nil
}

// applyTones stores the journey's tone rules, replaced as a whole when
// they differ.
func applyTones(ctx context.Context, tx pgx.Tx, tones []journey.ToneRule) ([]journey.Change, error) {
	current, err := queryRows[templates.ToneRuleSource](ctx, tx, `SELECT tone, coalesce(condition, '') AS condition FROM tone_rules ORDER BY position`)
	if err != nil {
		return nil, translate(err, "reading tone rules")
	}
	next := make([]templates.ToneRuleSource, len(tones))
	for i, t := range tones {
		next[i] = templates.ToneRuleSource{Tone: t.Tone, When: t.When}
	}
	if slices.Equal(current, next) {
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
	return []journey.Change{{Kind: "tones", Name: "tone rules", What: "replaced"}}, nil
}

// ToneRules returns the tone rules in order (campaigns.SendStore).
func (s *Store) ToneRules(ctx context.Context) ([]templates.ToneRuleSource, error) {
	out, err := queryRows[templates.ToneRuleSource](ctx, s.db, `SELECT tone, coalesce(condition, '') AS condition FROM tone_rules ORDER BY position`)
	return out, translate(err, "reading tone rules")
}

// storedTemplate is a template as stored: its content is templateJSON.
type storedTemplate struct {
	Name    string `db:"name"`
	Version int    `db:"version"`
	Content []byte `db:"content"`
}

func (t storedTemplate) template() (templates.Template, error) {
	var tj templateJSON
	if err := json.Unmarshal(t.Content, &tj); err != nil {
		return templates.Template{}, err
	}
	return templates.Template{Name: t.Name, Base: tj.Base, Tones: tj.Tones}, nil
}

// Template returns a stored template and its version; journey.ErrNotFound
// (and ErrNotFound) if there is none of that name.
func (s *Store) Template(ctx context.Context, name string) (templates.Template, int, error) {
	t, err := queryRow[storedTemplate](ctx, s.db, `SELECT name, version, content FROM templates WHERE name = $1`, name)
	if err != nil {
		return templates.Template{}, 0, translateAs(err, "reading template "+name, journey.ErrNotFound)
	}
	tmpl, err := t.template()
	return tmpl, t.Version, err
}

// Templates implements campaigns.SendStore.
func (s *Store) Templates(ctx context.Context, names []string) (map[string]campaigns.StoredTemplate, error) {
	stored, err := queryRows[storedTemplate](ctx, s.db, `SELECT name, version, content FROM templates WHERE name = ANY($1::text[])`, names)
	if err != nil {
		return nil, translate(err, "loading templates")
	}
	out := make(map[string]campaigns.StoredTemplate, len(stored))
	for _, t := range stored {
		tmpl, err := t.template()
		if err != nil {
			return nil, translate(err, "loading templates")
		}
		out[t.Name] = campaigns.StoredTemplate{Template: tmpl, Version: t.Version}
	}
	return out, nil
}

var _ campaigns.SendStore = (*Store)(nil)
