package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// Baseline runs store.FactsBaselineSQL, reading every row, and returns the rows and
// the time taken.
func Baseline(ctx context.Context, pool *pgxpool.Pool, needs []rule.Aggregate, asOf time.Time) (int64, time.Duration, error) {
	sql, args := store.FactsBaselineSQL(needs, asOf)
	start := time.Now()
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for rows.Next() {
		n++
		_ = rows.RawValues()
	}
	rows.Close()
	return n, time.Since(start), rows.Err()
}

// FactsStore is a lifecycle.Store whose LoadFacts is replaced by an
// experiment; rules and moves go to Base.
type FactsStore struct {
	Base *store.Store
	Pool *pgxpool.Pool
	// Kind is the experiment: "range" (one GROUP BY over the batch's id
	// range), "rollup" (the per-contact activity rollup, aggregated in
	// Go).
	Kind string
	// NoTraits skips reading traits (the benchmark's rules read none).
	NoTraits bool
}

func (s *FactsStore) Rules(ctx context.Context) ([]lifecycle.StoredRule, error) {
	return s.Base.Rules(ctx)
}

func (s *FactsStore) ApplyMoves(ctx context.Context, m []lifecycle.ContactMoves) (int, error) {
	return s.Base.ApplyMoves(ctx, m)
}

func (s *FactsStore) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	if q.IDs != nil {
		return s.Base.LoadFacts(ctx, q)
	}
	switch s.Kind {
	case "range":
		// One GROUP BY over the batch's id range instead of a subquery
		// per contact.
		return s.Base.LoadFactsRange(ctx, q, !s.NoTraits)
	case "rollup":
		return s.loadRollup(ctx, q)
	}
	return nil, fmt.Errorf("unknown facts experiment %q", s.Kind)
}

func (s *FactsStore) traits() string {
	if s.NoTraits {
		return "NULL::jsonb"
	}
	return "c.traits"
}

// The activity rollup: one row per contact holding all its events as
// 14-byte records in time order: the event name's id (int2), the time
// (int4, unix seconds - 2^31) and one numeric value (float8: the tracked
// property of that event name, a number for sum, a hash for distinct; NaN
// when absent).
const rollupRecord = 14

// rollupProps returns, per event name, the one property the rules read
// (sum or distinct) and whether it is summed (else counted distinct).
func rollupProps(needs []rule.Aggregate) (map[string]string, map[string]bool, error) {
	props := map[string]string{}
	summed := map[string]bool{}
	for _, a := range needs {
		if a.Kind != rule.AggSum && a.Kind != rule.AggDistinct {
			continue
		}
		if p, ok := props[a.Event]; ok && (p != a.Property || summed[a.Event] != (a.Kind == rule.AggSum)) {
			return nil, nil, fmt.Errorf("rollup experiment: %s has two tracked properties", a.Event)
		}
		props[a.Event] = a.Property
		summed[a.Event] = a.Kind == rule.AggSum
	}
	return props, summed, nil
}

// BuildRollup builds bench_activity (and bench_event_names) from events,
// in SQL, for the properties needs reads. In the design it would be kept
// up to date by ingestion; here it is built once, and the time it takes is
// reported.
func BuildRollup(ctx context.Context, pool *pgxpool.Pool, needs []rule.Aggregate, storageExternal bool) (time.Duration, error) {
	props, summed, err := rollupProps(needs)
	if err != nil {
		return 0, err
	}
	val := "NULL::float8"
	if len(props) > 0 {
		var b strings.Builder
		b.WriteString("CASE e.name")
		for name, p := range props {
			v := "e.properties->" + quoteLit(p)
			if summed[name] {
				fmt.Fprintf(&b, " WHEN %s THEN %s", quoteLit(name), store.NumericSQL(v))
			} else {
				fmt.Fprintf(&b, " WHEN %s THEN hashtext((%s)::text)::float8", quoteLit(name), v)
			}
		}
		b.WriteString(" END")
		val = b.String()
	}
	start := time.Now()
	storage := ""
	if storageExternal {
		storage = `ALTER TABLE bench_activity ALTER COLUMN data SET STORAGE EXTERNAL;`
	}
	for _, q := range []string{
		`DROP TABLE IF EXISTS bench_activity, bench_event_names`,
		`CREATE TABLE bench_event_names AS SELECT (row_number() OVER (ORDER BY name))::int2 AS id, name FROM (SELECT DISTINCT name FROM events) n`,
		`CREATE TABLE bench_activity (contact_id bigint PRIMARY KEY, data bytea NOT NULL);` + storage,
		`SET maintenance_work_mem = '1GB'`,
		`SET work_mem = '512MB'`,
		`INSERT INTO bench_activity
SELECT e.contact_id, string_agg(int2send(n.id) || int4send((extract(epoch FROM e.occurred_at)::bigint - 2147483648)::int4)
       || float8send(coalesce(` + val + `, 'NaN'::float8)), ''::bytea ORDER BY e.occurred_at)
FROM events e JOIN bench_event_names n ON n.name = e.name GROUP BY e.contact_id`,
		`VACUUM ANALYZE bench_activity`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("building the rollup: %w", err)
		}
	}
	return time.Since(start), nil
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// rollupPlan is the aggregates' evaluation plan over rollup records.
type rollupPlan struct {
	byName  map[int16][]int // name id → indexes into needs
	since   []int64         // per need: window start (exclusive), unix seconds; MinInt64 for all
	kinds   []rule.AggKind
	loaded  bool
	needKey string
}

func (s *FactsStore) plan(ctx context.Context, needs []rule.Aggregate, asOf time.Time) (*rollupPlan, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, name FROM bench_event_names`)
	if err != nil {
		return nil, err
	}
	ids := map[string]int16{}
	var (
		id   int16
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error { ids[name] = id; return nil }); err != nil {
		return nil, err
	}
	p := &rollupPlan{byName: map[int16][]int{}}
	for i, a := range needs {
		if nid, ok := ids[a.Event]; ok {
			p.byName[nid] = append(p.byName[nid], i)
		}
		since := int64(math.MinInt64)
		if !a.Window.All && a.Window.Dur > 0 {
			since = asOf.Add(-a.Window.Dur).Unix()
		}
		p.since = append(p.since, since)
		p.kinds = append(p.kinds, a.Kind)
	}
	return p, nil
}

var rollupPlans sync.Map // "asOf" → *rollupPlan; the benchmark's plans

// loadRollup reads the batch's contacts with their rollup and computes the
// aggregates in Go.
func (s *FactsStore) loadRollup(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	key := q.AsOf.String() + fmt.Sprint(q.Needs)
	pv, ok := rollupPlans.Load(key)
	if !ok {
		p, err := s.plan(ctx, q.Needs, q.AsOf)
		if err != nil {
			return nil, err
		}
		pv, _ = rollupPlans.LoadOrStore(key, p)
	}
	p := pv.(*rollupPlan)
	// The rollup rows are bounded by the batch's id range, so that the
	// planner reads them by index rather than hashing the whole table.
	sql := `WITH c AS (SELECT * FROM contacts c WHERE c.id > $1 AND c.merged_into IS NULL AND c.created_at <= $2 ORDER BY c.id LIMIT $3)
SELECT c.id, c.stage, c.stage_entered_at, ` + s.traits() + `, coalesce(c.email, ''), a.data
FROM c LEFT JOIN (SELECT * FROM bench_activity WHERE contact_id > $1 AND contact_id <= (SELECT max(id) FROM c)) a ON a.contact_id = c.id ORDER BY c.id`
	rows, err := s.Pool.Query(ctx, sql, q.After, q.AsOf, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("loading facts (rollup): %w", err)
	}
	var (
		out     []lifecycle.ContactFacts
		id      int64
		stage   string
		entered time.Time
		traits  map[string]any
		email   string
	)
	asOf := q.AsOf.Unix()
	at := float64(q.AsOf.UnixMicro()) / 1e6
	num := make([]float64, len(q.Needs))
	latest := make([]int64, len(q.Needs))
	sets := make([]map[float64]struct{}, len(q.Needs))
	for i := range sets {
		if p.kinds[i] == rule.AggDistinct {
			sets[i] = map[float64]struct{}{}
		}
	}
	for rows.Next() {
		raw := rows.RawValues()
		if err := rows.Scan(&id, &stage, &entered, &traits, &email, nil); err != nil {
			return nil, err
		}
		data := raw[5]
		for i := range num {
			num[i], latest[i] = 0, math.MinInt64
			if sets[i] != nil {
				clear(sets[i])
			}
		}
		for off := 0; off+rollupRecord <= len(data); off += rollupRecord {
			rec := data[off : off+rollupRecord]
			nid := int16(uint16(rec[0])<<8 | uint16(rec[1]))
			idx := p.byName[nid]
			if len(idx) == 0 {
				continue
			}
			ts := int64(int32(uint32(rec[2])<<24|uint32(rec[3])<<16|uint32(rec[4])<<8|uint32(rec[5]))) + 2147483648
			if ts > asOf {
				continue
			}
			v := math.Float64frombits(uint64(rec[6])<<56 | uint64(rec[7])<<48 | uint64(rec[8])<<40 | uint64(rec[9])<<32 |
				uint64(rec[10])<<24 | uint64(rec[11])<<16 | uint64(rec[12])<<8 | uint64(rec[13]))
			for _, i := range idx {
				if ts <= p.since[i] {
					continue
				}
				switch p.kinds[i] {
				case rule.AggCount:
					num[i]++
				case rule.AggSum:
					if !math.IsNaN(v) {
						num[i] += v
					}
				case rule.AggDistinct:
					if !math.IsNaN(v) {
						sets[i][v] = struct{}{}
					}
				default:
					latest[i] = max(latest[i], ts)
				}
			}
		}
		f := lifecycle.ContactFacts{ID: id}
		f.Now, f.Stage, f.StageEnteredAt, f.Traits, f.Email = q.AsOf, rule.Stage(stage), entered, traits, email
		f.Values = make(map[rule.Aggregate]float64, len(q.Needs))
		for i, a := range q.Needs {
			switch p.kinds[i] {
			case rule.AggDistinct:
				f.Values[a] = float64(len(sets[i]))
			case rule.AggEver:
				f.Values[a] = map[bool]float64{true: 1, false: 0}[latest[i] != math.MinInt64]
			case rule.AggDaysSince:
				if latest[i] == math.MinInt64 {
					f.Values[a] = math.Inf(1)
				} else {
					f.Values[a] = max(0, (at-float64(latest[i]))/86400)
				}
			default:
				f.Values[a] = num[i]
			}
		}
		traits = nil
		out = append(out, f)
	}
	rows.Close()
	return out, rows.Err()
}

// Partition splits a store's pass over all contacts into n stores, each
// seeing only the contacts of one id range (1..maxID cut in n), so n
// engines can sweep in parallel on n connections. Lists of ids go through
// unchanged.
func Partition(st lifecycle.Store, n int, maxID int64) []lifecycle.Store {
	out := make([]lifecycle.Store, n)
	for i := 0; i < n; i++ {
		lo, hi := maxID*int64(i)/int64(n), maxID*int64(i+1)/int64(n)
		if i == n-1 {
			hi = math.MaxInt64
		}
		out[i] = &rangeStore{Store: st, lo: lo, hi: hi}
	}
	return out
}

// rangeStore sees the contacts with lo < id <= hi.
type rangeStore struct {
	lifecycle.Store
	lo, hi int64
}

func (r *rangeStore) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	if q.IDs != nil {
		return r.Store.LoadFacts(ctx, q)
	}
	if q.After < r.lo {
		q.After = r.lo
	}
	if q.After >= r.hi {
		return nil, nil
	}
	out, err := r.Store.LoadFacts(ctx, q)
	for i, f := range out {
		if f.ID > r.hi {
			return out[:i], err
		}
	}
	return out, err
}
