package store

import (
	"context"

	"github.com/waymark/waymark/internal/journey"
)

// ApplyJourney stores a checked journey atomically: all of it or, on any
// error, nothing. Applying the same journey again changes nothing; a rule
// whose from, to or condition changed gets the next version (what changed
// is journey.Diff's and journey.DiffRules' to say; the store executes
// their edits). With dryRun the transaction is rolled back and the changes
// are only reported.
func (s *Store) ApplyJourney(ctx context.Context, j *journey.Journey, dryRun bool) ([]journey.Change, error) {
	var changes []journey.Change
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, translate(err, "applying the journey")
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// One apply at a time, so versions are assigned once.
	if _, err := tx.Exec(ctx, sqlJourneyLock); err != nil {
		return nil, translate(err, "applying the journey")
	}
	for _, apply := range []func() ([]journey.Change, error){
		func() ([]journey.Change, error) { return applyRules(ctx, tx, j.Rules) },
		func() ([]journey.Change, error) { return applyTones(ctx, tx, j.Tones) },
		func() ([]journey.Change, error) { return applyTemplates(ctx, tx, j.Templates) },
		func() ([]journey.Change, error) { return applySequences(ctx, tx, j.Sequences) },
		func() ([]journey.Change, error) { return applyHolds(ctx, tx, j.Holds) },
		func() ([]journey.Change, error) { return applyOffers(ctx, tx, j.Offers) },
		func() ([]journey.Change, error) { return applySettings(ctx, tx, j.Settings) },
		func() ([]journey.Change, error) { return applyWebhooks(ctx, tx, j.Webhooks) },
		func() ([]journey.Change, error) { return applySegments(ctx, tx, j.Segments) },
		func() ([]journey.Change, error) { return applyBroadcasts(ctx, tx, j.Broadcasts) },
		func() ([]journey.Change, error) { return applyConversion(ctx, tx, j.Conversion) },
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

// sqlJourneyLock is taken by whatever writes the journey (an apply, a
// rule saved from the editor), so versions are assigned once.
const sqlJourneyLock = "SELECT pg_advisory_xact_lock(7243)"

// TemplateList returns the templates, by name.
func (s *Store) TemplateList(ctx context.Context) ([]journey.Named, error) {
	return s.named(ctx, `SELECT name, version, content AS definition, updated_at FROM templates ORDER BY name`, "reading templates")
}

// SequenceList returns the sequences in journey order.
func (s *Store) SequenceList(ctx context.Context) ([]journey.Named, error) {
	return s.named(ctx, `SELECT name, version, definition, updated_at FROM sequences ORDER BY position, name`, "reading sequences")
}

// OfferList returns the offers, by name.
func (s *Store) OfferList(ctx context.Context) ([]journey.Named, error) {
	return s.named(ctx, `SELECT name, 0 AS version, definition, updated_at FROM offers ORDER BY name`, "reading offers")
}

func (s *Store) named(ctx context.Context, sql, doing string) ([]journey.Named, error) {
	out, err := queryRows[journey.Named](ctx, s.db, sql)
	return out, translate(err, doing)
}

// sqlJourneyVersion digests everything the engine, the campaigns runner and
// the sender load from the journey: rules, sequences (and every stored
// version), holds, offers, settings, the paused sequences and the tone
// rules. The tables are small (a journey's worth of rows); the digest
// changes whenever any row does.
const sqlJourneyVersion = `SELECT md5(concat_ws('|',
    (SELECT string_agg(concat_ws(':', name, version, position, from_stages::text, to_stage, condition), E'\n' ORDER BY position, name) FROM rules),
    (SELECT string_agg(concat_ws(':', name, version, position, md5(definition::text)), E'\n' ORDER BY position, name) FROM sequences),
    (SELECT string_agg(concat_ws(':', name, version), E'\n' ORDER BY name, version) FROM sequence_versions),
    (SELECT string_agg(concat_ws(':', name, position, condition), E'\n' ORDER BY position, name) FROM holds),
    (SELECT string_agg(concat_ws(':', name, md5(definition::text)), E'\n' ORDER BY name) FROM offers),
    (SELECT md5(definition::text) FROM settings),
    (SELECT string_agg(name, E'\n' ORDER BY name) FROM paused_sequences),
    (SELECT string_agg(concat_ws(':', position, tone, condition), E'\n' ORDER BY position) FROM tone_rules),
    (SELECT string_agg(concat_ws(':', name, condition), E'\n' ORDER BY position, name) FROM segments)))`

// JourneyVersion implements lifecycle.Versioned, campaigns'
// DependencyStore and campaigns.SendStore: a digest of the stored journey,
// so the reactor reloads rules and campaign definitions, and the sender
// compiles holds and tone rules, only when they changed.
func (s *Store) JourneyVersion(ctx context.Context) (string, error) {
	var v string
	err := s.db.QueryRow(ctx, sqlJourneyVersion).Scan(&v)
	return v, translate(err, "reading the journey's version")
}
