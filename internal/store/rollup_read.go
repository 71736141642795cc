package store

// Reading the activity rollup (rollup.go): a contact's records into the
// aggregates the rules read, and a page of a sweep from the rollup.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// rollupLayout is how to read records: per name id, the number of values
// its records carry and, per need, what to do with a record.
type rollupLayout struct {
	width []int      // by name id: record length (0: unknown id)
	uses  [][]recUse // by name id: the needs it feeds
}

type recUse struct {
	need  int
	kind  rule.AggKind
	since int64 // window start in µs, exclusive; MinInt64 for all
	none  bool  // an enrolment window: nothing, as in the events query
	value int   // offset of the value (sum, distinct)
}

func newLayout(spec []rollupProp, ids []int32, names []string, needs []rule.Aggregate, asOf int64) (*rollupLayout, error) {
	maxID := int32(0)
	for _, id := range ids {
		if id < 0 {
			return nil, fmt.Errorf("activity rollup: bad event name id %d", id)
		}
		maxID = max(maxID, id)
	}
	l := &rollupLayout{width: make([]int, maxID+1), uses: make([][]recUse, maxID+1)}
	byName := map[string]int32{}
	for i, id := range ids {
		byName[names[i]] = id
		n := 0
		for _, p := range spec {
			if p.Event == names[i] {
				n++
			}
		}
		l.width[id] = 12 + 8*n
	}
	for i, a := range needs {
		id, ok := byName[a.Event]
		if !ok {
			continue // no such event yet: the defaults hold
		}
		u := recUse{need: i, kind: a.Kind, since: math.MinInt64, value: -1}
		switch {
		case a.Window.Enrolment:
			u.none = true
		case !a.Window.All && a.Window.Dur > 0:
			u.since = asOf - a.Window.Dur.Microseconds()
		}
		if a.Kind == rule.AggSum || a.Kind == rule.AggDistinct {
			off := 12
			for _, p := range spec {
				if p.Event != a.Event {
					continue
				}
				if p.Property == a.Property && p.Sum == (a.Kind == rule.AggSum) {
					u.value = off
					break
				}
				off += 8
			}
			if u.value < 0 {
				return nil, fmt.Errorf("activity rollup: it does not carry %s", a)
			}
		}
		if !u.none {
			l.uses[id] = append(l.uses[id], u)
		}
	}
	return l, nil
}

// aggState accumulates one contact's aggregates.
type aggState struct {
	num    []float64
	latest []int64
	sets   []map[uint64]struct{}
}

func newAggState(needs []rule.Aggregate) *aggState {
	st := &aggState{num: make([]float64, len(needs)), latest: make([]int64, len(needs)), sets: make([]map[uint64]struct{}, len(needs))}
	for i, a := range needs {
		if a.Kind == rule.AggDistinct {
			st.sets[i] = map[uint64]struct{}{}
		}
	}
	return st
}

// accumulate reads a contact's records. It reports a record it cannot
// read instead of guessing.
func (l *rollupLayout) accumulate(st *aggState, data []byte, asOf int64) error {
	for i := range st.num {
		st.num[i], st.latest[i] = 0, math.MinInt64
		if st.sets[i] != nil {
			clear(st.sets[i])
		}
	}
	for off := 0; off < len(data); {
		if len(data)-off < 12 {
			return fmt.Errorf("activity rollup: a record is cut at byte %d of %d", off, len(data))
		}
		id := binary.BigEndian.Uint32(data[off:])
		w := 0
		if id < uint32(len(l.width)) {
			w = l.width[id]
		}
		if w == 0 || len(data)-off < w {
			return fmt.Errorf("activity rollup: unknown event name id %d or cut record at byte %d", id, off)
		}
		rec := data[off : off+w]
		off += w
		uses := l.uses[id]
		if len(uses) == 0 {
			continue
		}
		ts := int64(binary.BigEndian.Uint64(rec[4:]))
		if ts > math.MaxInt64-pgEpochMicros {
			ts = math.MaxInt64 // infinity
		} else {
			ts += pgEpochMicros
		}
		if ts > asOf {
			continue
		}
		for _, u := range uses {
			if ts <= u.since {
				continue
			}
			switch u.kind {
			case rule.AggCount:
				st.num[u.need]++
			case rule.AggSum:
				if v := math.Float64frombits(binary.BigEndian.Uint64(rec[u.value:])); !math.IsNaN(v) {
					st.num[u.need] += v
				}
			case rule.AggDistinct:
				if h := binary.BigEndian.Uint64(rec[u.value:]); h != 0 {
					st.sets[u.need][h] = struct{}{}
				}
			default:
				st.latest[u.need] = max(st.latest[u.need], ts)
			}
		}
	}
	return nil
}

// values writes the accumulated aggregates to out (parallel to needs), as
// values() does for the events query.
func (st *aggState) values(needs []rule.Aggregate, asOf time.Time, out []float64) {
	at := asOf.UnixMicro()
	for i, a := range needs {
		switch a.Kind {
		case rule.AggDistinct:
			out[i] = float64(len(st.sets[i]))
		case rule.AggEver:
			out[i] = 0
			if st.latest[i] != math.MinInt64 {
				out[i] = 1
			}
		case rule.AggDaysSince:
			if st.latest[i] == math.MinInt64 {
				out[i] = math.Inf(1)
			} else {
				// The difference in whole microseconds first: exact.
				out[i] = max(0, float64(at-st.latest[i])/1e6/86400)
			}
		default:
			out[i] = st.num[i]
		}
	}
}

const sqlRollupLayout = `SELECT s.spec, s.snapshot,
    coalesce((SELECT array_agg(id ORDER BY id) FROM activity_names), '{}') AS ids,
    coalesce((SELECT array_agg(name ORDER BY id) FROM activity_names), '{}') AS names
FROM activity_state s`

// rollupLayoutRow is sqlRollupLayout's row: the state, and the ids and
// names of the event names the records use.
type rollupLayoutRow struct {
	Spec     string   `db:"spec"`
	Snapshot string   `db:"snapshot"`
	IDs      []int32  `db:"ids"`
	Names    []string `db:"names"`
}

// sqlRollupContacts reads a page of contacts: $1 the cursor, $2 the as-of
// instant, $3 the page size.
//
// Only the traits q asks for are read: all, none, or only the keys of
// q.TraitKeys ($4 on): decoding every contact's traits is most of the cost
// of a page when only one is read.
func sqlRollupContacts(q lifecycle.FactsQuery) string {
	t := "traits"
	switch {
	case q.SkipTraits:
		t = "NULL::jsonb"
	case q.TraitKeys != nil:
		var kv []string
		for i := range q.TraitKeys {
			kv = append(kv, fmt.Sprintf("$%d::text, traits->$%d::text", i+4, i+4))
		}
		t = "jsonb_build_object(" + strings.Join(kv, ", ") + ")"
		if len(kv) == 0 {
			t = "NULL::jsonb"
		}
	}
	return `SELECT id, stage, stage_entered_at, ` + t + ` AS traits, coalesce(email, '') AS email FROM contacts
WHERE id > $1 AND merged_into IS NULL AND created_at <= $2 ORDER BY id LIMIT $3`
}

// sqlRollupRows reads the rollup rows of the contacts $1 < id <= $2: a
// range of the table, which a build wrote in contact_id order. (Joining
// them to the page of contacts instead made PostgreSQL probe the index once
// per contact.)
const sqlRollupRows = `SELECT contact_id, data FROM activity WHERE contact_id > $1 AND contact_id <= $2 ORDER BY contact_id`

// errNoRollup means the rollup cannot serve a query (never built, or
// lacking a property): the caller reads the events instead.
var errNoRollup = errors.New("the activity rollup cannot serve this query")

// loadRollupFacts serves a page of contacts from the rollup: the page of
// contacts, then the rollup rows of its id range, merged here. The layout
// and both reads share one snapshot, so a concurrent rebuild cannot pair
// one layout with another's records.
func (s *Store) loadRollupFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	var out []lifecycle.ContactFacts
	var err error
	if b, ok := s.db.(beginner); ok {
		err = pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			// The lock before the snapshot (LOCK takes none): a rebuild
			// (TRUNCATE) either committed before it, and the snapshot
			// sees the new rows, or waits for this page.
			if _, err := tx.Exec(ctx, `LOCK TABLE activity IN ACCESS SHARE MODE`); err != nil {
				return err
			}
			out, err = rollupPage(ctx, tx, q)
			return err
		})
	} else {
		// A transaction already (tests): its snapshot.
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			out, err = rollupPage(ctx, tx, q)
			return err
		})
	}
	return out, err
}

func rollupPage(ctx context.Context, tx pgx.Tx, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	b := &pgx.Batch{}
	b.Queue(sqlRollupLayout)
	args := []any{q.After, q.AsOf, q.Limit}
	if !q.SkipTraits {
		for _, k := range q.TraitKeys {
			args = append(args, k)
		}
	}
	b.Queue(sqlRollupContacts(q), args...)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	state, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[rollupLayoutRow])
	if err != nil {
		return nil, err
	}
	spec, format, err := parseSpec(state.Spec)
	if err != nil {
		return nil, err
	}
	if state.Snapshot == "" || format != rollupFormat || !covers(spec, specProps(q.Needs)) {
		return nil, errNoRollup
	}
	ids, names := state.IDs, state.Names
	// The page's contacts are scanned by position, into variables reused
	// for every row: a sweep reads every contact, and scanning them by name
	// into a struct (pgx.RowToStructByName) cost 4.1–5.1 → 5.5–7.4 µs a
	// contact of a sweep over 50,000 from the rollup (BenchmarkSweepPage,
	// three alternating runs each).
	rows, err = br.Query()
	if err != nil {
		return nil, err
	}
	var (
		out     = make([]lifecycle.ContactFacts, 0, q.Limit)
		id      int64
		stage   string
		entered time.Time
		traits  map[string]any
		email   string
		nums    []float64 // the page's values, allocated in blocks
		n       = len(q.Needs)
	)
	for rows.Next() {
		if err := rows.Scan(&id, &stage, &entered, &traits, &email); err != nil {
			rows.Close()
			return nil, err
		}
		f := lifecycle.ContactFacts{ID: id}
		f.Now, f.Stage, f.StageEnteredAt, f.Traits, f.Email = q.AsOf, internStage(stage), entered, traits, email
		if len(nums) < n {
			nums = make([]float64, n*1024)
		}
		f.Nums, nums = nums[:n:n], nums[n:]
		f.NumNeeds = q.Needs
		traits = nil
		out = append(out, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	asOf := q.AsOf.UnixMicro()
	layout, err := newLayout(spec, ids, names, q.Needs, asOf)
	if err != nil {
		return nil, err
	}
	st := newAggState(q.Needs)
	// The values of a contact without events.
	none := make([]float64, n)
	if err := layout.accumulate(st, nil, asOf); err != nil {
		return nil, err
	}
	st.values(q.Needs, q.AsOf, none)
	if len(out) == 0 {
		return out, nil
	}
	rows, err = tx.Query(ctx, sqlRollupRows, q.After, out[len(out)-1].ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// By position: the records (column 1) are read where they arrived,
	// without a copy (see loadFactsByID).
	raw := binaryColumn(rows, 1)
	j := 0
	var data []byte
	for rows.Next() {
		if raw {
			// The records as they arrived, not copied: they are read
			// before the next row.
			if err := rows.Scan(&id, nil); err != nil {
				return nil, err
			}
			data = rows.RawValues()[1]
		} else if err := rows.Scan(&id, &data); err != nil {
			return nil, err
		}
		for ; j < len(out) && out[j].ID < id; j++ {
			copy(out[j].Nums, none)
		}
		if j == len(out) || out[j].ID != id {
			continue // a merged contact's, or one created after as-of
		}
		if err := layout.accumulate(st, data, asOf); err != nil {
			return nil, fmt.Errorf("contact %d: %w", id, err)
		}
		st.values(q.Needs, q.AsOf, out[j].Nums)
		j++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for ; j < len(out); j++ {
		copy(out[j].Nums, none)
	}
	return out, nil
}

// binaryColumn reports whether column i of rows comes in binary format.
// A query that failed has no columns (its error comes from rows.Err):
// false then, and the text path scans nothing.
func binaryColumn(rows pgx.Rows, i int) bool {
	fd := rows.FieldDescriptions()
	return i < len(fd) && fd[i].Format == pgx.BinaryFormatCode
}

// internStage returns the stage named s without keeping s, for the
// stages there are.
func internStage(s string) rule.Stage {
	for _, st := range rule.Stages {
		if string(st) == s {
			return st
		}
	}
	return rule.Stage(s)
}
