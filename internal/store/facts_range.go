package store

import (
	"strconv"
	"time"

	"github.com/waymark/waymark/rule"
)

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

// paramOf returns a function that appends a value to args and returns its
// placeholder ($N).
func paramOf(args *[]any) func(any) string {
	return func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
}
