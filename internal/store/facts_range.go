package store

import (
	"context"
	"strconv"
	"time"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Two other ways to compute what LoadFacts does for a pass over all
// contacts, which the lifecycle benchmark measures against it
// (waymark-bench sweep -facts range, and the GROUP BY baseline of
// waymark-bench sweep and path): the same
// aggregates (aggregatesSQL) and the same reading of them (scanFacts,
// values), over events grouped by contact rather than a subquery per
// contact.

// LoadFactsRange loads the facts of the page of contacts q selects (After,
// Limit) with one GROUP BY over the events of the page's id range, rather
// than a subquery per contact. Without traits, the contacts' traits are
// not read.
func (s *Store) LoadFactsRange(ctx context.Context, q lifecycle.FactsQuery, traits bool) ([]lifecycle.ContactFacts, error) {
	args := []any{q.AsOf, nil, q.After, q.Limit}
	agg, names, kinds := aggregatesSQL(q.Needs, paramOf(&args), "$1::timestamptz", "NULL")
	args[1] = names
	trait := "c.traits"
	if !traits {
		trait = "NULL::jsonb"
	}
	sql := `WITH c AS (SELECT id, stage, stage_entered_at, traits, email FROM contacts c
    WHERE c.id > $3 AND c.merged_into IS NULL AND c.created_at <= $1 ORDER BY c.id LIMIT $4),
a AS (SELECT e.contact_id, ` + agg + ` AS aggs FROM events e
    WHERE e.contact_id BETWEEN (SELECT min(id) FROM c) AND (SELECT max(id) FROM c)
      AND e.name = ANY($2::text[]) AND e.occurred_at <= $1 GROUP BY e.contact_id)
SELECT c.id, c.stage, c.stage_entered_at, ` + trait + `, coalesce(c.email, ''), a.aggs FROM c LEFT JOIN a ON a.contact_id = c.id ORDER BY c.id`
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(err, "loading facts by id range")
	}
	out, err := scanFacts(rows, q, kinds)
	return out, translate(err, "loading facts by id range")
}

// FactsBaselineSQL is one GROUP BY contact_id over all events computing
// the aggregates needs at asOf for every contact, with its arguments: what
// PostgreSQL alone takes to compute a sweep's facts.
func FactsBaselineSQL(needs []rule.Aggregate, asOf time.Time) (string, []any) {
	args := []any{asOf, nil}
	agg, names, _ := aggregatesSQL(needs, paramOf(&args), "$1::timestamptz", "NULL")
	args[1] = names
	return `SELECT e.contact_id, ` + agg + ` FROM events e
WHERE e.name = ANY($2::text[]) AND e.occurred_at <= $1 GROUP BY e.contact_id`, args
}

// NumericSQL is SQL reading the JSON value v as a number, as the facts
// query reads a summed property: anything that is not a number counts as
// nothing, and nothing overflows.
func NumericSQL(v string) string { return numeric(v) }

// paramOf returns a function that appends a value to args and returns its
// placeholder ($N).
func paramOf(args *[]any) func(any) string {
	return func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
}
