package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Facts: what the rules read of each contact (its state and the
// aggregates of its events), loaded for a batch of contacts from the
// events table; a sweep over every contact reads the activity rollup
// instead (rollup.go).

// factsSQL builds the one query that loads, for a batch of contacts, their
// state and every aggregate the rules need: a column per aggregate, each a
// FILTERed aggregate over the contact's events, so all rules are served by
// one pass over the batch's events (found by the primary key's leading
// contact_id). Parameters: $1 as-of, $2 the event names needed, then per
// aggregate its name, property and window start; then the selection ($n ids,
// or $n cursor and $n+1 limit).
func factsSQL(needs []rule.Aggregate, byIDs bool) (string, []any, []int) {
	args := []any{nil, nil}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	agg, names, kinds := aggregatesSQL(needs, param, "$1::timestamptz", "NULL")
	args[1] = names
	var where string
	if byIDs {
		where = "c.id = ANY(" + param(nil) + "::bigint[]) AND coalesce(c.merged_into, 0) = 0"
	} else {
		where = "c.id > " + param(nil) + " AND c.merged_into IS NULL AND c.created_at <= $1 ORDER BY c.id LIMIT " + param(nil)
	}
	// The aggregates come back as one float8 array so the column count
	// does not depend on the rules (NULL where no event matched).
	sql := `SELECT c.id, c.stage, c.stage_entered_at, c.traits, coalesce(c.email, '') AS email,
	(SELECT ` + agg + ` FROM events e
	  WHERE e.contact_id = c.id AND e.name = ANY($2::text[]) AND e.occurred_at <= $1) AS aggs
FROM contacts c WHERE ` + where
	return sql, args, kinds
}

// aggregatesSQL builds the float8 array of FILTERed aggregates over events
// e that needs call for. asOf is the SQL for the evaluation instant and
// enrolled for the start of the "enrolment" window. It returns the array
// expression, the event names involved, and per element whether it is a
// number (0) or the seconds since the latest matching event (1).
func aggregatesSQL(needs []rule.Aggregate, param func(any) string, asOf, enrolled string) (string, []string, []int) {
	var (
		cols  []string
		names = map[string]bool{}
		kinds []int
	)
	for _, a := range needs {
		names[a.Event] = true
		cond := nameCond(a.Event, param)
		if base, ok := rule.MachineEventBase(a.Event); ok {
			names[base] = true
		}
		switch {
		case a.Window.Enrolment:
			cond += " AND e.occurred_at >= " + enrolled
		case !a.Window.All && a.Window.Dur > 0:
			cond += " AND e.occurred_at > " + asOf + " - " + param(a.Window.Dur) + "::interval"
		}
		switch a.Kind {
		case rule.AggCount:
			cols = append(cols, "count(*) FILTER (WHERE "+cond+")::float8")
			kinds = append(kinds, 0)
		case rule.AggSum:
			cols = append(cols, "coalesce(sum("+numeric("e.properties->"+param(a.Property))+") FILTER (WHERE "+cond+"), 0)")
			kinds = append(kinds, 0)
		case rule.AggDistinct:
			cols = append(cols, "count(DISTINCT e.properties->"+param(a.Property)+") FILTER (WHERE "+cond+")::float8")
			kinds = append(kinds, 0)
		case rule.AggDaysSince, rule.AggEver:
			// Seconds from the latest such event to the as-of instant:
			// the difference of two timestamps, exact to the microsecond
			// (two epochs as float8 lose half of one, and an event-started
			// sequence starts at the event's exact time).
			cols = append(cols, "extract(epoch FROM "+asOf+" - max(e.occurred_at) FILTER (WHERE "+cond+"))::float8")
			kinds = append(kinds, 1)
		}
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	agg := "NULL::float8[]"
	if len(cols) > 0 {
		agg = "ARRAY[" + strings.Join(cols, ", ") + "]"
	}
	return agg, list, kinds
}

// Machine opens and clicks. Tracking stores a hit that is not a person
// reading (a privacy proxy fetching every pixel, a link scanner) as
// email_opened_machine or email_clicked_machine with "machine": true; an
// email_opened or email_clicked that arrives flagged "machine": true some
// other way (imported from another tool, sent to /v1/track) is taken as the
// _machine name too. So count("email_opened", ...) and every other
// aggregate over email_opened count people only, and a rule that wants the
// machines asks for the _machine name. The rollup applies the same mapping
// when it folds (see rollup.go). The names are
// rule.MachineEvents.

// sqlMachineFlag is true for an event e flagged as a machine's.
const sqlMachineFlag = `e.properties @> '{"machine": true}'`

// sqlEventName is the name an event e counts under.
const sqlEventName = `(CASE WHEN e.name IN ('email_opened', 'email_clicked') AND ` + sqlMachineFlag + ` THEN e.name || '_machine' ELSE e.name END)`

// nameCond is the SQL condition that event e counts as name.
func nameCond(name string, param func(any) string) string {
	if _, ok := rule.MachineEvents[name]; ok {
		return "(e.name = " + param(name) + " AND NOT " + sqlMachineFlag + ")"
	}
	if base, ok := rule.MachineEventBase(name); ok {
		return "(e.name = " + param(name) + " OR e.name = " + param(base) + " AND " + sqlMachineFlag + ")"
	}
	return "e.name = " + param(name)
}

// values turns a row's aggregate array into Facts.Values.
func values(needs []rule.Aggregate, kinds []int, aggs []*float64, asOf time.Time) map[rule.Aggregate]float64 {
	out := make(map[rule.Aggregate]float64, len(needs))
	for i, a := range needs {
		var v *float64
		if i < len(aggs) {
			v = aggs[i]
		}
		switch {
		case kinds[i] == 0 && v != nil:
			out[a] = *v
		case kinds[i] == 0:
			out[a] = 0
		case a.Kind == rule.AggEver && v != nil:
			out[a] = 1
		case a.Kind == rule.AggEver:
			out[a] = 0
		case v != nil:
			out[a] = max(0, *v/86400)
		default:
			out[a] = math.Inf(1)
		}
	}
	return out
}

// numeric reads a JSON value as a number: JSON numbers, and strings that
// are plain decimals ("49.90"); anything else counts as nothing. It cannot
// fail, whatever is stored: a number of 300 characters or more (jsonb
// writes 1e400 as 401 digits) counts only if it is under 1e300 in
// magnitude (rounded to 300 decimals, so a tiny one is 0, not an
// underflow), so that no cast to float8 overflows and a sum() of them
// overflows only past ~1e8 events. Once, 1e400 in one event's revenue
// made every evaluation reading sum() over it fail (issue 23).
func numeric(v string) string {
	return "(CASE jsonb_typeof(" + v + ") WHEN 'number' THEN " + float8Text("(("+v+")::text)") +
		" WHEN 'string' THEN CASE WHEN (" + v + " #>> '{}') ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN " + float8Text("("+v+" #>> '{}')") + " END END)"
}

// float8Text casts t, the text of a decimal number, to float8 without
// failing (see numeric); NULL when it is out of range.
func float8Text(t string) string {
	return "CASE WHEN length(" + t + ") < 300 THEN " + t + "::float8" +
		" WHEN length(" + t + ") < 2000 AND abs(" + t + "::numeric) < 1e300 THEN round(" + t + "::numeric, 300)::float8 END"
}

// LoadFacts implements lifecycle.Store.
func (s *Store) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	if q.Rollup && q.IDs == nil {
		out, err := s.loadRollupFacts(ctx, q)
		if !errors.Is(err, errNoRollup) {
			return out, translate(err, "loading facts from the activity rollup")
		}
	}
	if q.IDs != nil {
		out, err := s.loadFactsByID(ctx, q)
		return out, translate(err, "loading facts")
	}
	sql, args, kinds := factsSQL(q.Needs, q.IDs != nil)
	args[0] = q.AsOf
	if q.IDs != nil {
		args[len(args)-1] = q.IDs
	} else {
		args[len(args)-2] = q.After
		args[len(args)-1] = q.Limit
	}
	var out []lifecycle.ContactFacts
	err := s.withoutJIT(ctx, func(db DB) error {
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = scanFacts(rows, q, kinds)
		return err
	})
	if err != nil {
		return nil, translate(err, "loading facts")
	}
	return out, nil
}

// sqlFactsByID loads contacts ids with their events' records (as the
// rollup's, rollup.go, recordByNameSQL) up to $1: the
// aggregates are computed from them in Go, as for the rollup, rather than
// by a FILTERed aggregate per need in PostgreSQL, whose cost per event
// was most of the cost of evaluating the contacts events touch.
//
// Merged contacts are left out by coalesce(c.merged_into, 0) = 0 rather
// than c.merged_into IS NULL: the latter matches the predicate of the
// partial indexes on contacts (migration 009), and on a table whose
// statistics lag (a database filling up, never analysed yet) the planner
// ANDed a scan of a whole partial index with the primary key probes, for
// every query: O(contacts) per batch.
func sqlFactsByID(rec string, events bool, ids, masks string) string {
	from := `, 0 FROM contacts c WHERE c.id = ANY(` + ids + `::bigint[]) AND coalesce(c.merged_into, 0) = 0`
	if masks != "" {
		// Only contacts in a stage where their new events matter, with
		// their place in the list (n). Each contact is looked up by its
		// primary key (LATERAL), whatever the statistics of a table that
		// is filling up say.
		from = `, v.n FROM unnest(` + ids + `::bigint[], ` + masks + `::int[]) WITH ORDINALITY AS v(id, mask, n)
CROSS JOIN LATERAL (SELECT * FROM contacts c WHERE c.id = v.id AND coalesce(c.merged_into, 0) = 0 OFFSET 0) c
WHERE v.mask & (1 << (array_position(` + sqlStageArray + `, c.stage) - 1)) <> 0`
	}
	if !events {
		return `SELECT c.id, c.stage, c.stage_entered_at, c.traits, coalesce(c.email, ''), NULL::bytea
	` + from
	}
	return `SELECT c.id, c.stage, c.stage_entered_at, c.traits, coalesce(c.email, ''),
	(SELECT string_agg(` + rec + `, ''::bytea) FROM events e
	  WHERE e.contact_id = c.id AND e.occurred_at <= $1)
	` + from
}

// sqlStageArray lists the stages in the order of rule.Stages (the
// bits of lifecycle.Touched.Stages).
var sqlStageArray = func() string {
	q := make([]string, len(rule.Stages))
	for i, st := range rule.Stages {
		q[i] = string(st)
	}
	return `'{` + strings.Join(q, ",") + `}'::text[]`
}()

// loadFactsByID loads the facts of the contacts q.IDs. The records name
// events by their place in the list of names the needs read (an event
// counted under another name, a machine's email_opened when only
// email_opened is read, has none and is left out).
func (s *Store) loadFactsByID(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	var names []string
	for _, a := range q.Needs {
		if !slices.Contains(names, a.Event) {
			names = append(names, a.Event)
		}
	}
	spec := specProps(q.Needs)
	args := []any{q.AsOf, q.IDs}
	param := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	rec := recordByNameSQL(spec, names, param)
	ids := make([]int32, len(names))
	for i := range ids {
		ids[i] = int32(i + 1)
	}
	asOf := q.AsOf.UnixMicro()
	layout, err := newLayout(spec, ids, names, q.Needs, asOf)
	if err != nil {
		return nil, err
	}
	st := newAggState(q.Needs)
	n := len(q.Needs)
	nums := make([]float64, n)
	var out []lifecycle.ContactFacts
	// Each contact's events are few: an index scan reads them with less
	// set-up than a bitmap (which the planner, expecting more, picks);
	// and the contacts listed are probed by primary key, never found by
	// scanning the table (which stale statistics can make look cheaper).
	err = s.withSettings(ctx, `SET LOCAL jit = off; SET LOCAL enable_bitmapscan = off; `+sqlSeqScanOff, func(db DB) error {
		// No aggregate needed (no rules, only a campaigns hook with
		// nothing to ask): no events read.
		ids := "$2"
		if len(names) == 0 {
			args, ids = []any{q.IDs}, "$1"
		}
		masks := ""
		if q.Touched != nil {
			if len(q.Touched) != len(q.IDs) {
				return fmt.Errorf("%d contacts touched for %d ids", len(q.Touched), len(q.IDs))
			}
			m := make([]int32, len(q.Touched))
			for i := range q.Touched {
				m[i] = int32(q.Touched[i].Stages)
			}
			args = append(args, m)
			masks = "$" + strconv.Itoa(len(args))
		}
		rows, err := db.Query(ctx, sqlFactsByID(rec, len(names) > 0, ids, masks), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			id      int64
			stage   string
			entered time.Time
			traits  map[string]any
			email   string
			data    []byte
			pos     int64 // place in q.Touched, from 1; 0 without
		)
		// Scanned by position: the records (column 5) are read where
		// they arrived, without a copy, which a struct scanned by name
		// cannot do, into variables reused for every row.
		raw := binaryColumn(rows, 5)
		for rows.Next() {
			if raw {
				// The records as they arrived, not copied: read before
				// the next row.
				if err := rows.Scan(&id, &stage, &entered, &traits, &email, nil, &pos); err != nil {
					return err
				}
				data = rows.RawValues()[5]
			} else if err := rows.Scan(&id, &stage, &entered, &traits, &email, &data, &pos); err != nil {
				return err
			}
			if err := layout.accumulate(st, data, asOf); err != nil {
				return fmt.Errorf("contact %d: %w", id, err)
			}
			f := lifecycle.ContactFacts{ID: id}
			f.Now, f.Stage, f.StageEnteredAt, f.Traits, f.Email = q.AsOf, internStage(stage), entered, traits, email
			if q.Compact {
				if len(nums) < n {
					nums = make([]float64, n*256)
				}
				f.Nums, nums = nums[:n:n], nums[n:]
				f.NumNeeds = q.Needs
				st.values(q.Needs, q.AsOf, f.Nums)
			} else {
				st.values(q.Needs, q.AsOf, nums)
				f.Values = make(map[rule.Aggregate]float64, n)
				for i, a := range q.Needs {
					f.Values[a] = nums[i]
				}
			}
			if pos > 0 && int(pos) <= len(q.Touched) {
				t := &q.Touched[pos-1]
				f.Event, f.NewEvents = t.Event, t.Names
			}
			traits, data = nil, nil
			out = append(out, f)
		}
		return rows.Err()
	})
	return out, err
}

// machineBaseOr returns, for email_opened_machine, email_opened, and
// otherwise name.
func machineBaseOr(name string) string {
	if b, ok := rule.MachineEventBase(name); ok {
		return b
	}
	return name
}

// withoutJIT runs fn in a transaction with PostgreSQL's JIT compilation
// off. The facts query's estimated cost (a subquery per contact over its
// events) is far above jit_above_cost, and compiling it took about half a
// second of CPU per query, more than running it: every batch of contacts
// touched by events paid that.
func (s *Store) withoutJIT(ctx context.Context, fn func(db DB) error) error {
	return s.withSettings(ctx, `SET LOCAL jit = off`, fn)
}

// scanFacts reads the rows of factsSQL. By position, into variables
// reused for every row: a sweep that cannot use the rollup reads every
// contact this way, and scanning by name into a struct
// (pgx.RowToStructByName) cost 18–25 → 25–30 µs a contact of a sweep over
// 50,000 (BenchmarkSweepPage, from=events, three alternating runs each).
func scanFacts(rows pgx.Rows, q lifecycle.FactsQuery, kinds []int) ([]lifecycle.ContactFacts, error) {
	var (
		out     []lifecycle.ContactFacts
		id      int64
		stage   string
		entered time.Time
		traits  map[string]any
		email   string
		aggs    []*float64
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &stage, &entered, &traits, &email, &aggs}, func() error {
		f := lifecycle.ContactFacts{ID: id}
		f.Now = q.AsOf
		f.Stage = rule.Stage(stage)
		f.StageEnteredAt = entered
		f.Traits = traits
		f.Email = email
		f.Values = values(q.Needs, kinds, aggs, q.AsOf)
		traits = nil
		aggs = nil
		out = append(out, f)
		return nil
	})
	return out, err
}
