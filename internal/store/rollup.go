package store

// The activity rollup (migration 007): what a sweep over every contact
// reads instead of the events table.
//
// Each contact has one row in activity whose data is a sequence of records,
// one per event of the contact, in no particular order:
//
//	int4  the id in activity_names of the name the event counts under
//	      (sqlEventName: a machine's email_opened is email_opened_machine)
//	int8  occurred_at as PostgreSQL sends it: microseconds since
//	      2000-01-01 UTC (timestamptz_send, no arithmetic per event)
//	8 bytes per property the rollup tracks for that event name, in the
//	        order of the spec: for a summed property the float8 value
//	        (NaN when absent or not numeric), for a counted-distinct one
//	        jsonb_hash_extended of the JSON value (0 when absent)
//
// Because every event keeps its exact time, every window edge is exactly
// where the events-table query puts it (occurred_at > as-of - window, and
// occurred_at <= as-of), and --as-of backtests work on the rollup too. The
// rollup is a cache of the events table, kept in step by folding:
//
//   - Every event row carries ingest_xid, the transaction that stored it.
//     activity_state remembers the snapshot of the last fold; a fold, in a
//     REPEATABLE READ transaction holding the state row, appends the
//     records of exactly the events visible now and not in that snapshot
//     (so an event of a transaction still running at one fold is taken by
//     the next), then records its own snapshot. Folds of two processes
//     serialise on the state row; the later one retries.
//   - Appending is enough because records are an unordered multiset: a
//     late event (old occurred_at) is one more record. A merge inserts the
//     anonymous contact's events under the identified contact (new rows,
//     folded into its row) and marks the anonymous one merged, which no
//     sweep reads. Erasing a contact deletes its row.
//   - The spec lists the (event, property) pairs whose values records
//     carry. When a sweep's rules need one it lacks, the rollup is
//     rebuilt from events with the union of both (so two processes with
//     different rules do not take turns rebuilding), up to maxRollupProps;
//     beyond that, with what the rules need now. A rollup of an older
//     format (rollupFormat) is rebuilt too. A dry run never rebuilds it
//     (PrepareDryRun): one that needs a property it lacks reads events.
//   - A build writes the rows in contact_id order, after a TRUNCATE, so
//     that a sweep's pages (id ranges) read the table from start to end;
//     readers lock the table before taking their snapshot, so a page is
//     read wholly before or wholly after a rebuild.
//
// Event-driven evaluation (lists of contacts) still reads the events table
// directly, so an event is visible to its rule the moment it is committed;
// it reads the contacts' events as the same records (loadFactsByID), and
// the aggregates are computed from them by the same code.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/rule"
)

// rollupProp is a property whose values the rollup's records carry.
type rollupProp struct {
	Event    string `json:"event"`
	Property string `json:"property"`
	Sum      bool   `json:"sum"` // summed; else counted distinct
}

// rollupFormat is the rollup's current format. 2: rows stored in
// contact_id order, machine opens and clicks under their _machine names.
// 3: times as timestamptz_send writes them. A rollup of an older format
// (1 was a bare JSON list of properties) is rebuilt by the next fold.
const rollupFormat = 3

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's epoch, in microseconds
// since the Unix epoch.
const pgEpochMicros = 946684800_000_000

// rollupSpec is what activity_state.spec records.
type rollupSpec struct {
	Format int          `json:"format"`
	Props  []rollupProp `json:"props"`
}

// parseSpec reads activity_state.spec: the properties the records carry
// and the format they were built in (0 when never built).
func parseSpec(s string) ([]rollupProp, int, error) {
	if s == "" {
		return nil, 0, nil
	}
	if strings.HasPrefix(s, "[") {
		var out []rollupProp
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, 0, fmt.Errorf("activity rollup: bad spec %q: %w", s, err)
		}
		return out, 1, nil
	}
	var sp rollupSpec
	if err := json.Unmarshal([]byte(s), &sp); err != nil || sp.Format <= 0 {
		return nil, 0, fmt.Errorf("activity rollup: bad spec %q: %v", s, err)
	}
	return sp.Props, sp.Format, nil
}

// specProps returns the properties needs read, sorted.
func specProps(needs []rule.Aggregate) []rollupProp {
	var out []rollupProp
	for _, a := range needs {
		if a.Kind == rule.AggSum || a.Kind == rule.AggDistinct {
			p := rollupProp{a.Event, a.Property, a.Kind == rule.AggSum}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	sortProps(out)
	return out
}

func sortProps(ps []rollupProp) {
	slices.SortFunc(ps, func(a, b rollupProp) int {
		if c := strings.Compare(a.Event, b.Event); c != 0 {
			return c
		}
		if c := strings.Compare(a.Property, b.Property); c != 0 {
			return c
		}
		if a.Sum == b.Sum {
			return 0
		}
		if a.Sum {
			return 1
		}
		return -1
	})
}

// covers reports whether spec carries every property in want.
func covers(spec, want []rollupProp) bool {
	for _, p := range want {
		if !slices.Contains(spec, p) {
			return false
		}
	}
	return true
}

// recordSQL is the SQL of one event's record (events e joined with
// activity_names n on the name it counts under, sqlEventName) under spec.
func recordSQL(spec []rollupProp, param func(any) string) string {
	var b strings.Builder
	b.WriteString("int4send(n.id) || timestamptz_send(e.occurred_at)")
	for i := 0; i < len(spec); {
		j := i
		for j < len(spec) && spec[j].Event == spec[i].Event {
			j++
		}
		b.WriteString(" || CASE WHEN n.name = " + param(spec[i].Event) + " THEN ")
		for k := i; k < j; k++ {
			if k > i {
				b.WriteString(" || ")
			}
			b.WriteString(propRecordSQL(spec[k], param))
		}
		b.WriteString(" ELSE ''::bytea END")
		i = j
	}
	return b.String()
}

// propRecordSQL is the part of an event's record for the property p: its
// number for a sum (NaN when it has none), or a hash of its value for a
// distinct (0 when it has none, never 0 otherwise).
func propRecordSQL(p rollupProp, param func(any) string) string {
	v := "e.properties->" + param(p.Property)
	if p.Sum {
		return "float8send(coalesce(" + numeric(v) + ", 'NaN'::float8))"
	}
	return "int8send(CASE WHEN " + v + " IS NULL THEN 0 ELSE coalesce(nullif(jsonb_hash_extended(" + v + ", 0), 0), 1) END)"
}

// recordByNameSQL is the record of an event e (recordSQL's layout) for
// event-driven evaluation, where names (the names the needs count under)
// number the records (from 1) instead of activity_names: one CASE on the
// stored name picks the record's constant number and its properties, and
// gives NULL for an event no need counts (which string_agg skips). It
// compares each event's name a few times instead of the two dozen a
// generic expression (the counted name, its place in names, then each
// property's event) took: that was a third of reading a contact's events.
func recordByNameSQL(spec []rollupProp, names []string, param func(any) string) string {
	rec := func(name string) string {
		i := slices.Index(names, name)
		if i < 0 {
			return "NULL"
		}
		var b strings.Builder
		fmt.Fprintf(&b, `'\x%08x'::bytea || timestamptz_send(e.occurred_at)`, uint32(i+1))
		for _, p := range spec {
			if p.Event != name {
				continue
			}
			b.WriteString(" || " + propRecordSQL(p, param))
		}
		return b.String()
	}
	var b strings.Builder
	b.WriteString("CASE e.name")
	var raw []string
	for _, n := range names {
		// An event stored as email_opened_machine counts under that name
		// too.
		for _, r := range []string{n, machineBaseOr(n)} {
			if !slices.Contains(raw, r) {
				raw = append(raw, r)
			}
		}
	}
	for _, r := range raw {
		b.WriteString(" WHEN " + param(r) + " THEN ")
		if m, ok := rule.MachineEvents[r]; ok {
			// A machine's open or click counts under its _machine name.
			b.WriteString("CASE WHEN " + sqlMachineFlag + " THEN " + rec(m) + " ELSE " + rec(r) + " END")
		} else {
			b.WriteString(rec(r))
		}
	}
	b.WriteString(" END")
	return b.String()
}

// sqlNewEvents selects the events committed since snapshot $1 (whose xmin
// is $2).
const sqlNewEvents = `e.ingest_xid >= $2::bigint AND NOT pg_visible_in_snapshot(e.ingest_xid::text::xid8, $1::pg_snapshot)`

// rollupState is activity_state's row: the spec its records were built
// with, and the snapshot of the last fold ("" before the first build).
type rollupState struct {
	Spec     string `db:"spec"`
	Snapshot string `db:"snapshot"`
}

// FoldStats says what PrepareSweep did.
type FoldStats struct {
	Rebuilt  bool // the rollup was built from all events
	Contacts int64
	Elapsed  time.Duration
}

// PrepareSweep implements lifecycle.SweepPreparer: it brings the activity
// rollup up to date for needs — folding in the events committed since the
// last fold, or building it from all events the first time or when needs
// reads a property it does not carry.
func (s *Store) PrepareSweep(ctx context.Context, needs []rule.Aggregate) error {
	_, err := s.FoldActivity(ctx, needs)
	return err
}

// PrepareDryRun implements lifecycle.DryRunPreparer: it folds the events
// committed since the last fold into the rollup, as a sweep would, when
// the rollup carries everything needs reads; it never builds the rollup or
// adds properties to it. A dry run must not change what sweeps decide by,
// nor make every reader wait for a rebuild (a read-only dashboard session
// could force one per dry run, and grow the rollup's property list for
// good): when the rollup lacks a property, the dry run reads the events.
func (s *Store) PrepareDryRun(ctx context.Context, needs []rule.Aggregate) error {
	_, err := s.fold(ctx, needs, false)
	return err
}

// maxRollupProps is the most properties the rollup's records carry. Rules
// reading more (event, property) pairs with sum() or distinct() are served
// from the events; properties no rule reads any more are dropped when a
// rebuild would carry more.
const maxRollupProps = 32

// FoldActivity is PrepareSweep, with what it did.
func (s *Store) FoldActivity(ctx context.Context, needs []rule.Aggregate) (FoldStats, error) {
	return s.fold(ctx, needs, true)
}

// fold is FoldActivity; without build, it refuses (errNoRollup) instead
// of building the rollup.
func (s *Store) fold(ctx context.Context, needs []rule.Aggregate, build bool) (FoldStats, error) {
	start := time.Now()
	var st FoldStats
	err := s.inRepeatableRead(ctx, func(tx pgx.Tx) error {
		st = FoldStats{}
		// Holding the state row serialises folds; one that started
		// before another committed fails to serialise and retries.
		state, err := queryRow[rollupState](ctx, tx, `SELECT spec, snapshot FROM activity_state FOR UPDATE`)
		if err != nil {
			return err
		}
		snap := state.Snapshot
		spec, format, err := parseSpec(state.Spec)
		if err != nil {
			return err
		}
		want := specProps(needs)
		if snap == "" || format != rollupFormat || !covers(spec, want) {
			if !build {
				return errNoRollup
			}
			if len(want) > maxRollupProps {
				return fmt.Errorf("the rules read %d properties with sum() or distinct(); the activity rollup carries at most %d", len(want), maxRollupProps)
			}
			union := slices.Clone(want)
			for _, p := range spec {
				if !slices.Contains(union, p) {
					union = append(union, p)
				}
			}
			if len(union) <= maxRollupProps {
				want = union
			}
			sortProps(want)
			st.Rebuilt = true
			st.Contacts, err = buildActivity(ctx, tx, want)
			return err
		}
		st.Contacts, err = foldActivity(ctx, tx, spec, snap)
		return err
	})
	st.Elapsed = time.Since(start)
	return st, translate(err, "updating the activity rollup")
}

// inRepeatableRead runs fn in a REPEATABLE READ transaction (a savepoint
// when the store is itself a transaction, as in tests), again when it
// fails to serialise with another (a fold or attribution pass that took
// the state row first).
func (s *Store) inRepeatableRead(ctx context.Context, fn func(tx pgx.Tx) error) error {
	_, nested := s.db.(pgx.Tx)
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			if !nested {
				if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`); err != nil {
					return err
				}
			}
			return fn(tx)
		})
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}

// buildActivity replaces the rollup with one built from all events.
func buildActivity(ctx context.Context, tx pgx.Tx, spec []rollupProp) (int64, error) {
	specJSON, err := json.Marshal(rollupSpec{Format: rollupFormat, Props: spec})
	if err != nil {
		return 0, err
	}
	args := []any{}
	param := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	rec := recordSQL(spec, param)
	for _, q := range []string{
		`SET LOCAL work_mem = '256MB'`,
		`INSERT INTO activity_names (name) SELECT DISTINCT ` + sqlEventName + ` FROM events e ON CONFLICT (name) DO NOTHING`,
		// Room on each page for the folds' new row versions, which then
		// stay on their page (HOT) and keep the table in contact_id order.
		`ALTER TABLE activity SET (fillfactor = 90)`,
		// TRUNCATE, so that the new rows are alone in the table, in order,
		// not mixed with the old ones' dead versions until a vacuum. Pages
		// being read hold the table (loadRollupFacts locks it before its
		// snapshot), so a page is read wholly before or wholly after this.
		`TRUNCATE activity`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, err
		}
	}
	// In contact_id order, so that a sweep reading pages of contacts in id
	// order reads the table from start to end, not a random page per
	// contact.
	tag, err := tx.Exec(ctx, `INSERT INTO activity (contact_id, data)
SELECT e.contact_id, string_agg(`+rec+`, ''::bytea)
FROM events e JOIN activity_names n ON n.name = `+sqlEventName+` GROUP BY e.contact_id ORDER BY e.contact_id`, args...)
	if err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE activity_state SET spec = $1, snapshot = pg_current_snapshot()::text, built_at = now(), folded_at = now()`, string(specJSON))
	return tag.RowsAffected(), err
}

// foldActivity appends the records of the events committed since snap.
func foldActivity(ctx context.Context, tx pgx.Tx, spec []rollupProp, snap string) (int64, error) {
	xmin, _, ok := strings.Cut(snap, ":")
	if !ok {
		return 0, fmt.Errorf("activity rollup: bad snapshot %q", snap)
	}
	// The new events are found through the BRIN index on ingest_xid;
	// the planner, whose statistics lag behind the newest transaction
	// ids, must not scan the whole table instead.
	// Nor spend half a second of CPU compiling the fold with JIT, every
	// minute, for the few events it usually takes.
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL jit = off`); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO activity_names (name) SELECT DISTINCT `+sqlEventName+` FROM events e WHERE `+sqlNewEvents+`
ON CONFLICT (name) DO NOTHING`, snap, xmin); err != nil {
		return 0, err
	}
	args := []any{snap, xmin}
	param := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	rec := recordSQL(spec, param)
	tag, err := tx.Exec(ctx, `INSERT INTO activity (contact_id, data)
SELECT e.contact_id, string_agg(`+rec+`, ''::bytea)
FROM events e JOIN activity_names n ON n.name = `+sqlEventName+` WHERE `+sqlNewEvents+` GROUP BY e.contact_id
ON CONFLICT (contact_id) DO UPDATE SET data = activity.data || EXCLUDED.data`, args...)
	if err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE activity_state SET snapshot = pg_current_snapshot()::text, folded_at = now()`)
	return tag.RowsAffected(), err
}
