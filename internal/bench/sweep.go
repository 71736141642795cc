package bench

// The lifecycle sweep benchmark: a database of N contacts and M events
// loaded straight into the schema's tables with COPY, ten realistic rules,
// and the pieces to time the engine's Sweep and DryRun against one plain
// GROUP BY over the same events. It also holds the experiments measured
// while looking for a sweep that fits the target (fact loaders with another
// query shape, a per-contact activity rollup, parallel partitions); they
// wrap lifecycle.Store so that the engine itself runs unchanged.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/lifecycle"
)

// SweepDatabaseName is the sweep benchmark's database: it is kept between
// runs with -keep, because generating 20M events takes minutes.
const SweepDatabaseName = "waymark_bench_sweep"

// SweepJourney is the benchmark's journey: DESIGN.md's examples and
// variants using sum, distinct, days_since and ever over windows from 14
// days to all history. The rules are made consistent (a forward rule and
// the regression that undoes it cannot both hold at one instant), so that
// a second sweep at about the same time moves few contacts.
const SweepJourney = `rules:
  - name: engaged-visitor
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 3 || count("email_clicked", "14d") >= 1
  - name: newsletter-reader
    from: [awareness]
    to: consideration
    when: count("email_opened", "8w") >= 4 && days_since("page_viewed") <= 60
  - name: shopping
    from: [consideration]
    to: decision
    when: count("product_viewed", "7d") >= 2 && ever("cart_updated")
  - name: comparing
    from: [consideration]
    to: decision
    when: distinct("product_viewed", "product_id", "30d") >= 4
  - name: customer
    from: [awareness, consideration, decision]
    to: retention
    when: count("order_completed", "90d") >= 1
  - name: advocate
    from: [retention]
    to: advocacy
    when: (count("order_completed", "365d") >= 3 || ever("review_posted")) && count("support_ticket_opened", "30d") == 0
  - name: big-spender
    from: [retention]
    to: advocacy
    when: sum("order_completed", "revenue", "1y") >= 500 && count("support_ticket_opened", "30d") == 0
  - name: unhappy
    from: [advocacy]
    to: retention
    when: count("support_ticket_opened", "30d") >= 2
  - name: lapsed
    from: [retention, advocacy]
    to: decision
    when: days_since("order_completed") > 90 && sum("order_completed", "revenue", "all") > 0
  - name: gone-cold
    from: [consideration, decision]
    to: awareness
    when: days_since("page_viewed") > 60 && days_since("email_clicked") > 60 && !(count("order_completed", "90d") >= 1)
`

// SweepSize is the size of the benchmark's data.
type SweepSize struct {
	Contacts int
	Events   int
}

// SweepDB is the benchmark's database.
type SweepDB struct {
	Name   string
	URL    string
	Reused bool // it held data of the same size already
	server string
}

// OpenSweepDatabase returns the benchmark database on the server: the one
// left by an earlier run, if it holds a complete load of the same size and
// reuse is allowed, or else a new, empty one.
func OpenSweepDatabase(ctx context.Context, serverURL string, size SweepSize, reuse bool) (*SweepDB, error) {
	u, err := pgserver.WithDatabase(serverURL, SweepDatabaseName)
	if err != nil {
		return nil, err
	}
	d := &SweepDB{Name: SweepDatabaseName, URL: u, server: serverURL}
	if reuse {
		if conn, err := pgx.Connect(ctx, u); err == nil {
			var c, e int64
			err := conn.QueryRow(ctx, `SELECT contacts, events FROM bench_sweep_meta WHERE complete`).Scan(&c, &e)
			conn.Close(context.Background())
			if err == nil && c == int64(size.Contacts) && e == int64(size.Events) {
				d.Reused = true
				return d, nil
			}
		}
	}
	err = createDatabase(ctx, serverURL, d.Name)
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", d.Name, err)
	}
	return d, nil
}

// Drop drops the benchmark database.
func (d *SweepDB) Drop(ctx context.Context) error {
	return DropDatabase(ctx, d.server, d.Name)
}

// The event names generated, with their weights (per thousand) for a
// buyer; non-buyers' orders and reviews become page views and opens.
var sweepNames = []struct {
	name   string
	weight int
}{
	{"page_viewed", 400},
	{"product_viewed", 250},
	{"cart_updated", 70},
	{"order_completed", 30},
	{"email_opened", 140},
	{"email_clicked", 60},
	{"review_posted", 15},
	{"support_ticket_opened", 35},
}

const (
	nPage = iota
	nProduct
	nCart
	nOrder
	nOpened
	nClicked
	nReview
	nTicket
)

var sweepPaths = []string{"/", "/shop", "/shop/boots", "/shop/jackets", "/blog/packing-list", "/blog/trail-guide", "/about", "/help/returns", "/cart", "/account"}
var sweepCampaigns = []string{"welcome-1", "welcome-2", "best-of-blog", "cart-reminder", "we-miss-you", "spring-sale", "new-arrivals"}
var sweepTopics = []string{"returns", "shipping", "sizing", "payment", "damaged"}

// genEvent is one generated event, compactly.
type genEvent struct {
	ts      int64 // unix seconds
	contact int32
	name    uint8
	aux     uint16 // revenue in cents, product, path or campaign index
}

// sweepData is the generated data set.
type sweepData struct {
	now      int64
	created  []int64 // per contact (index id-1), unix seconds
	events   []genEvent
	order    []uint32 // events in time order (by day), as indexes into events
	contacts int
}

// generate decides every contact and event. Contacts have a lognormal
// number of events (most a handful, a few thousands), spread between
// their first visit (in the last two years) and either now (35%) or a
// time they lapsed; 30% are buyers.
func generate(size SweepSize, now time.Time) *sweepData {
	d := &sweepData{now: now.Unix(), contacts: size.Contacts, created: make([]int64, size.Contacts)}
	n := size.Contacts
	raw := make([]float64, n)
	var sum float64
	r := rand.New(rand.NewPCG(1, 2))
	for i := range raw {
		raw[i] = math.Exp(1.3 * r.NormFloat64())
		sum += raw[i]
	}
	counts := make([]int, n)
	starts := make([]int, n+1)
	var acc float64
	prev := 0
	for i := range raw {
		acc += raw[i] * float64(size.Events) / sum
		c := int(math.Round(acc)) - prev
		if i == n-1 {
			c = size.Events - prev
		}
		counts[i] = c
		prev += c
		starts[i+1] = prev
	}
	d.events = make([]genEvent, size.Events)
	const span = 730 * 86400
	var wg sync.WaitGroup
	workers := 2
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				r := rand.New(rand.NewPCG(uint64(i)+7, 99))
				first := d.now - int64(r.Float64()*span)
				d.created[i] = first
				end := d.now
				if r.Float64() >= 0.35 {
					end = first + int64(r.Float64()*float64(d.now-first))
				}
				buyer := r.Float64() < 0.3
				fav := r.IntN(500)
				for k := starts[i]; k < starts[i+1]; k++ {
					x := r.IntN(1000)
					name := 0
					for ; name < len(sweepNames)-1; name++ {
						if x < sweepNames[name].weight {
							break
						}
						x -= sweepNames[name].weight
					}
					if !buyer && name == nOrder {
						name = nPage
					}
					if !buyer && name == nReview {
						name = nOpened
					}
					var aux int
					switch name {
					case nOrder:
						aux = 1000 + r.IntN(25000)
					case nProduct, nCart, nReview:
						if r.IntN(3) == 0 {
							aux = fav
						} else {
							aux = r.IntN(500)
						}
					default:
						aux = r.IntN(64)
					}
					ts := first
					if end > first {
						ts = first + r.Int64N(end-first+1)
					}
					d.events[k] = genEvent{ts: ts, contact: int32(i + 1), name: uint8(name), aux: uint16(aux)}
				}
			}
		}(w)
	}
	wg.Wait()
	// Time order, to the day: events arrive in time order, so a contact's
	// events are spread over the whole table, as in production.
	days := 732
	bucket := make([]int, days+1)
	day := func(e *genEvent) int { return days - 1 - int((d.now-e.ts)/86400) }
	for i := range d.events {
		bucket[day(&d.events[i])+1]++
	}
	for i := 1; i <= days; i++ {
		bucket[i] += bucket[i-1]
	}
	d.order = make([]uint32, len(d.events))
	for i := range d.events {
		b := day(&d.events[i])
		d.order[bucket[b]] = uint32(i)
		bucket[b]++
	}
	return d
}

// properties returns event e's properties as JSON.
func (e *genEvent) properties(b []byte, i uint32) []byte {
	switch e.name {
	case nPage:
		b = append(b, `{"path":"`...)
		b = append(b, sweepPaths[int(e.aux)%len(sweepPaths)]...)
		b = append(b, `","title":"Waymark Outdoor"}`...)
	case nProduct, nCart:
		b = append(b, `{"product_id":"p-`...)
		b = strconv.AppendInt(b, int64(e.aux), 10)
		b = append(b, `","category":"`...)
		b = append(b, sweepPaths[int(e.aux)%len(sweepPaths)][1:]...)
		if e.name == nCart {
			b = append(b, `","quantity":`...)
			b = strconv.AppendInt(b, int64(1+e.aux%3), 10)
			b = append(b, '}')
		} else {
			b = append(b, `"}`...)
		}
	case nOrder:
		b = append(b, `{"order_id":"o-`...)
		b = strconv.AppendUint(b, uint64(i), 36)
		b = append(b, `","revenue":`...)
		b = strconv.AppendInt(b, int64(e.aux/100), 10)
		b = append(b, '.')
		c := e.aux % 100
		b = append(b, byte('0'+c/10), byte('0'+c%10))
		b = append(b, `,"currency":"USD"}`...)
	case nOpened, nClicked:
		b = append(b, `{"campaign":"`...)
		b = append(b, sweepCampaigns[int(e.aux)%len(sweepCampaigns)]...)
		b = append(b, `"}`...)
	case nReview:
		b = append(b, `{"product_id":"p-`...)
		b = strconv.AppendInt(b, int64(e.aux), 10)
		b = append(b, `","rating":`...)
		b = strconv.AppendInt(b, int64(1+e.aux%5), 10)
		b = append(b, '}')
	case nTicket:
		b = append(b, `{"ticket_id":"t-`...)
		b = strconv.AppendUint(b, uint64(i), 36)
		b = append(b, `","topic":"`...)
		b = append(b, sweepTopics[int(e.aux)%len(sweepTopics)]...)
		b = append(b, `"}`...)
	}
	return b
}

const sweepContext = `{"library":{"name":"@segment/analytics-node","version":"2.1.2"}}`

// eventRows feeds COPY the events order[lo:hi].
type eventRows struct {
	d      *sweepData
	order  []uint32
	pos    int
	props  []byte
	mid    []byte
	values []any
	err    error
}

func (r *eventRows) Next() bool { r.pos++; return r.pos <= len(r.order) }
func (r *eventRows) Err() error { return r.err }
func (r *eventRows) Values() ([]any, error) {
	i := r.order[r.pos-1]
	e := &r.d.events[i]
	r.props = e.properties(r.props[:0], i)
	r.mid = strconv.AppendUint(append(r.mid[:0], 'm'), uint64(i), 36)
	kind := "track"
	if e.name == nPage {
		kind = "page"
	}
	at := time.Unix(e.ts, 0).UTC()
	r.values = append(r.values[:0], int64(e.contact), string(r.mid), kind, sweepNames[e.name].name,
		r.props, sweepContext, at, at.Add(time.Duration(1+i%5)*time.Second))
	return r.values, nil
}

// contactRows feeds COPY the contacts.
type contactRows struct {
	d   *sweepData
	pos int
}

var sweepPlans = []string{"free", "free", "free", "pro", "business"}

func (r *contactRows) Next() bool { r.pos++; return r.pos <= r.d.contacts }
func (r *contactRows) Err() error { return nil }
func (r *contactRows) Values() ([]any, error) {
	id := r.pos
	c := time.Unix(r.d.created[id-1], 0).UTC()
	user := "cust-" + strconv.Itoa(id)
	traits := `{"plan":"` + sweepPlans[id%len(sweepPlans)] + `","locale":"en-US","first_name":"Ana"}`
	return []any{int64(id), user, user + "@example.com", traits, "awareness", c, c, c}, nil
}

type identityRows struct{ n, pos int }

func (r *identityRows) Next() bool { r.pos++; return r.pos <= r.n }
func (r *identityRows) Err() error { return nil }
func (r *identityRows) Values() ([]any, error) {
	return []any{"u:cust-" + strconv.Itoa(r.pos), int64(r.pos)}, nil
}

// SweepLoad is what loading the data took.
type SweepLoad struct {
	Generate, Copy, Index, Vacuum time.Duration
}

func (l SweepLoad) Total() time.Duration { return l.Generate + l.Copy + l.Index + l.Vacuum }

func (l SweepLoad) String() string {
	return fmt.Sprintf("%.1fs (generate %.1fs, COPY %.1fs, indexes %.1fs, VACUUM ANALYZE %.1fs)",
		l.Total().Seconds(), l.Generate.Seconds(), l.Copy.Seconds(), l.Index.Seconds(), l.Vacuum.Seconds())
}

// LoadSweepData fills a migrated, empty database with size's contacts,
// identities and events, as of now: the events' indexes are dropped during
// the COPY (two connections) and built after it, then everything is
// vacuumed and analysed. It records the size in bench_sweep_meta, so a
// later run can reuse the data.
func LoadSweepData(ctx context.Context, pool *pgxpool.Pool, size SweepSize, now time.Time, progress io.Writer) (SweepLoad, error) {
	var l SweepLoad
	if size.Contacts <= 0 || size.Events < 0 || size.Events > math.MaxUint32 {
		return l, errors.New("sweep data: bad size")
	}
	start := time.Now()
	d := generate(size, now)
	l.Generate = time.Since(start)
	fmt.Fprintf(progress, "  generated %d contacts and %d events in %.1fs\n", size.Contacts, size.Events, l.Generate.Seconds())

	// The per-contact indexes of events (whatever the migrations made
	// them) are dropped for the load and built again after it, as they
	// were.
	var perContact []string
	rows, err := pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'events' AND indexname LIKE 'events\_contact%' ORDER BY indexname`)
	if err != nil {
		return l, fmt.Errorf("sweep data: listing the events' indexes: %w", err)
	}
	if perContact, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return l, fmt.Errorf("sweep data: listing the events' indexes: %w", err)
	}
	drops := []string{
		`CREATE TABLE IF NOT EXISTS bench_sweep_meta (contacts bigint, events bigint, complete bool, loaded_at timestamptz, load_seconds float8)`,
		`TRUNCATE bench_sweep_meta, events, identities, contacts, transitions, activity, activity_names`,
		`UPDATE activity_state SET spec = '', snapshot = '', built_at = NULL, folded_at = NULL`,
		`ALTER TABLE events DROP CONSTRAINT events_pkey`,
	}
	for _, def := range perContact {
		name, _, _ := strings.Cut(strings.TrimPrefix(def, "CREATE INDEX "), " ")
		drops = append(drops, `DROP INDEX `+name)
	}
	for _, q := range drops {
		if _, err := pool.Exec(ctx, q); err != nil {
			return l, fmt.Errorf("sweep data: %s: %w", q, err)
		}
	}
	start = time.Now()
	g, gctx := errgroupLite(ctx)
	g.Go(func() error {
		_, err := pool.CopyFrom(gctx, pgx.Identifier{"contacts"},
			[]string{"id", "user_id", "email", "traits", "stage", "stage_entered_at", "created_at", "updated_at"}, &contactRows{d: d})
		if err != nil {
			return fmt.Errorf("copying contacts: %w", err)
		}
		_, err = pool.CopyFrom(gctx, pgx.Identifier{"identities"}, []string{"identity", "contact_id"}, &identityRows{n: size.Contacts})
		if err != nil {
			return fmt.Errorf("copying identities: %w", err)
		}
		return nil
	})
	const parts = 2
	var copied [parts]int64
	for p := 0; p < parts; p++ {
		lo, hi := len(d.order)*p/parts, len(d.order)*(p+1)/parts
		g.Go(func() error {
			// Chunks, so progress shows and one COPY does not hold
			// gigabytes of WAL in one transaction.
			const chunk = 1_000_000
			for s := lo; s < hi; s += chunk {
				e := min(hi, s+chunk)
				n, err := pool.CopyFrom(gctx, pgx.Identifier{"events"},
					[]string{"contact_id", "message_id", "kind", "name", "properties", "context", "occurred_at", "received_at"},
					&eventRows{d: d, order: d.order[s:e]})
				if err != nil {
					return fmt.Errorf("copying events: %w", err)
				}
				copied[p] += n
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return l, err
	}
	l.Copy = time.Since(start)
	fmt.Fprintf(progress, "  copied in %.1fs (%.0f events/s)\n", l.Copy.Seconds(), float64(size.Events)/l.Copy.Seconds())
	d = nil

	start = time.Now()
	g, gctx = errgroupLite(ctx)
	for _, q := range append([]string{`ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (contact_id, message_id)`}, perContact...) {
		g.Go(func() error {
			c, err := pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer c.Release()
			if _, err := c.Exec(gctx, `SET maintenance_work_mem = '1GB'`); err != nil {
				return err
			}
			if _, err := c.Exec(gctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return l, err
	}
	if _, err := pool.Exec(ctx, `SELECT setval('contact_id_seq', $1)`, int64(size.Contacts)); err != nil {
		return l, err
	}
	l.Index = time.Since(start)
	fmt.Fprintf(progress, "  indexes built in %.1fs\n", l.Index.Seconds())
	start = time.Now()
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) contacts, identities, events`); err != nil {
		return l, fmt.Errorf("vacuum: %w", err)
	}
	l.Vacuum = time.Since(start)
	_, err = pool.Exec(ctx, `INSERT INTO bench_sweep_meta VALUES ($1, $2, true, now(), $3)`, int64(size.Contacts), int64(size.Events), l.Total().Seconds())
	return l, err
}

// errgroupLite is the little of x/sync/errgroup this file needs (the
// module does not depend on it).
type liteGroup struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func errgroupLite(ctx context.Context) (*liteGroup, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &liteGroup{cancel: cancel}, ctx
}

func (g *liteGroup) Go(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.once.Do(func() { g.err = err; g.cancel() })
		}
	}()
}

func (g *liteGroup) Wait() error { g.wg.Wait(); g.cancel(); return g.err }

// SizeReport describes the tables' sizes.
func SizeReport(ctx context.Context, pool *pgxpool.Pool) string {
	var ev, idx, ct, act, exp string
	_ = pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_table_size('events')), pg_size_pretty(pg_indexes_size('events')),
		pg_size_pretty(pg_total_relation_size('contacts')),
		coalesce(pg_size_pretty(pg_total_relation_size(to_regclass('activity'))), '-'),
		coalesce(pg_size_pretty(pg_total_relation_size(to_regclass('bench_activity'))), '-')`).Scan(&ev, &idx, &ct, &act, &exp)
	return fmt.Sprintf("events %s + indexes %s, contacts %s, activity rollup %s (experiment's: %s)", ev, idx, ct, act, exp)
}

// aggColumns returns, as factsSQL in internal/store does, one SQL
// expression per aggregate over events e, with its parameters appended to
// args ($1 is the as-of instant), and per column whether it is a timestamp
// (days_since, ever).
func aggColumns(needs []lifecycle.Aggregate, args []any) ([]string, []any, []bool) {
	var (
		cols  []string
		stamp []bool
	)
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	for _, a := range needs {
		cond := "e.name = " + param(a.Event)
		if !a.Window.All && a.Window.Dur > 0 {
			cond += " AND e.occurred_at > $1::timestamptz - " + param(a.Window.Dur) + "::interval"
		}
		switch a.Kind {
		case lifecycle.AggCount:
			cols = append(cols, "count(*) FILTER (WHERE "+cond+")::float8")
		case lifecycle.AggSum:
			cols = append(cols, "coalesce(sum("+sqlNumeric("e.properties->"+param(a.Property))+") FILTER (WHERE "+cond+"), 0)")
		case lifecycle.AggDistinct:
			cols = append(cols, "count(DISTINCT e.properties->"+param(a.Property)+") FILTER (WHERE "+cond+")::float8")
		case lifecycle.AggDaysSince, lifecycle.AggEver:
			cols = append(cols, "extract(epoch FROM max(e.occurred_at) FILTER (WHERE "+cond+"))::float8")
		}
		stamp = append(stamp, a.Kind == lifecycle.AggDaysSince || a.Kind == lifecycle.AggEver)
	}
	return cols, args, stamp
}

func sqlNumeric(v string) string {
	return "(CASE jsonb_typeof(" + v + ") WHEN 'number' THEN (" + v + ")::text::float8" +
		" WHEN 'string' THEN CASE WHEN (" + v + " #>> '{}') ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN (" + v + " #>> '{}')::float8 END END)"
}

func eventNames(needs []lifecycle.Aggregate) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range needs {
		if !seen[a.Event] {
			seen[a.Event] = true
			out = append(out, a.Event)
		}
	}
	return out
}

// BaselineSQL is one GROUP BY contact_id over all events computing the
// aggregates needs, as the facts query does per contact: what PostgreSQL
// alone takes to compute the sweep's facts.
func BaselineSQL(needs []lifecycle.Aggregate, asOf time.Time) (string, []any) {
	cols, args, _ := aggColumns(needs, []any{asOf, eventNames(needs)})
	return `SELECT e.contact_id, ARRAY[` + strings.Join(cols, ", ") + `] FROM events e
WHERE e.name = ANY($2::text[]) AND e.occurred_at <= $1 GROUP BY e.contact_id`, args
}

// Baseline runs BaselineSQL, reading every row, and returns the rows and
// the time taken.
func Baseline(ctx context.Context, pool *pgxpool.Pool, needs []lifecycle.Aggregate, asOf time.Time) (int64, time.Duration, error) {
	sql, args := BaselineSQL(needs, asOf)
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

// factsValues turns a row's aggregates (as the facts query returns them)
// into Facts.Values, as internal/store's LoadFacts does.
func factsValues(needs []lifecycle.Aggregate, aggs []*float64, asOf time.Time) map[lifecycle.Aggregate]float64 {
	vals := make(map[lifecycle.Aggregate]float64, len(needs))
	at := float64(asOf.UnixMicro()) / 1e6
	for i, a := range needs {
		var v *float64
		if i < len(aggs) {
			v = aggs[i]
		}
		stamp := a.Kind == lifecycle.AggDaysSince || a.Kind == lifecycle.AggEver
		switch {
		case !stamp && v != nil:
			vals[a] = *v
		case !stamp:
			vals[a] = 0
		case a.Kind == lifecycle.AggEver:
			vals[a] = map[bool]float64{true: 1, false: 0}[v != nil]
		case v != nil:
			vals[a] = max(0, (at-*v)/86400)
		default:
			vals[a] = math.Inf(1)
		}
	}
	return vals
}

// FactsStore is a lifecycle.Store whose LoadFacts is replaced by an
// experiment; rules and moves go to Base.
type FactsStore struct {
	Base lifecycle.Store
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
		return s.loadRange(ctx, q)
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

// loadRange: the batch's contacts, then one GROUP BY over the events of
// the batch's id range (an index range scan instead of a subquery per
// contact).
func (s *FactsStore) loadRange(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	cols, args, _ := aggColumns(q.Needs, []any{q.AsOf, eventNames(q.Needs), q.After, q.Limit})
	sql := `WITH c AS (SELECT id, stage, stage_entered_at, traits, email FROM contacts c
    WHERE c.id > $3 AND c.merged_into IS NULL AND c.created_at <= $1 ORDER BY c.id LIMIT $4),
a AS (SELECT e.contact_id, ARRAY[` + strings.Join(cols, ", ") + `] AS aggs FROM events e
    WHERE e.contact_id BETWEEN (SELECT min(id) FROM c) AND (SELECT max(id) FROM c)
      AND e.name = ANY($2::text[]) AND e.occurred_at <= $1 GROUP BY e.contact_id)
SELECT c.id, c.stage, c.stage_entered_at, ` + s.traits() + `, coalesce(c.email, ''), a.aggs FROM c LEFT JOIN a ON a.contact_id = c.id ORDER BY c.id`
	rows, err := s.Pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("loading facts (range): %w", err)
	}
	var (
		out     []lifecycle.ContactFacts
		id      int64
		stage   string
		entered time.Time
		traits  map[string]any
		email   string
		aggs    []*float64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &stage, &entered, &traits, &email, &aggs}, func() error {
		f := lifecycle.ContactFacts{ID: id}
		f.Now, f.Stage, f.StageEnteredAt, f.Traits, f.Email = q.AsOf, lifecycle.Stage(stage), entered, traits, email
		f.Values = factsValues(q.Needs, aggs, q.AsOf)
		traits, aggs = nil, nil
		out = append(out, f)
		return nil
	})
	return out, err
}

// The activity rollup: one row per contact holding all its events as
// 14-byte records in time order: the event name's id (int2), the time
// (int4, unix seconds - 2^31) and one numeric value (float8: the tracked
// property of that event name, a number for sum, a hash for distinct; NaN
// when absent).
const rollupRecord = 14

// rollupProps returns, per event name, the one property the rules read
// (sum or distinct) and whether it is summed (else counted distinct).
func rollupProps(needs []lifecycle.Aggregate) (map[string]string, map[string]bool, error) {
	props := map[string]string{}
	summed := map[string]bool{}
	for _, a := range needs {
		if a.Kind != lifecycle.AggSum && a.Kind != lifecycle.AggDistinct {
			continue
		}
		if p, ok := props[a.Event]; ok && (p != a.Property || summed[a.Event] != (a.Kind == lifecycle.AggSum)) {
			return nil, nil, fmt.Errorf("rollup experiment: %s has two tracked properties", a.Event)
		}
		props[a.Event] = a.Property
		summed[a.Event] = a.Kind == lifecycle.AggSum
	}
	return props, summed, nil
}

// BuildRollup builds bench_activity (and bench_event_names) from events,
// in SQL, for the properties needs reads. In the design it would be kept
// up to date by ingestion; here it is built once, and the time it takes is
// reported.
func BuildRollup(ctx context.Context, pool *pgxpool.Pool, needs []lifecycle.Aggregate, storageExternal bool) (time.Duration, error) {
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
				fmt.Fprintf(&b, " WHEN %s THEN %s", quoteLit(name), sqlNumeric(v))
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
	kinds   []lifecycle.AggKind
	loaded  bool
	needKey string
}

func (s *FactsStore) plan(ctx context.Context, needs []lifecycle.Aggregate, asOf time.Time) (*rollupPlan, error) {
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
		if p.kinds[i] == lifecycle.AggDistinct {
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
				case lifecycle.AggCount:
					num[i]++
				case lifecycle.AggSum:
					if !math.IsNaN(v) {
						num[i] += v
					}
				case lifecycle.AggDistinct:
					if !math.IsNaN(v) {
						sets[i][v] = struct{}{}
					}
				default:
					latest[i] = max(latest[i], ts)
				}
			}
		}
		f := lifecycle.ContactFacts{ID: id}
		f.Now, f.Stage, f.StageEnteredAt, f.Traits, f.Email = q.AsOf, lifecycle.Stage(stage), entered, traits, email
		f.Values = make(map[lifecycle.Aggregate]float64, len(q.Needs))
		for i, a := range q.Needs {
			switch p.kinds[i] {
			case lifecycle.AggDistinct:
				f.Values[a] = float64(len(sets[i]))
			case lifecycle.AggEver:
				f.Values[a] = map[bool]float64{true: 1, false: 0}[latest[i] != math.MinInt64]
			case lifecycle.AggDaysSince:
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

// DatabaseCPU returns the CPU time (user + system) used so far by the
// server processes connected to database name, by pid, read from /proc
// (nil elsewhere). A benchmark takes it before and after a measurement to
// report what PostgreSQL spent on it, apart from other databases' load.
func DatabaseCPU(ctx context.Context, pool *pgxpool.Pool, name string) map[int]time.Duration {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, name)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fs) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		out[int(pid)] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}

// CPUSince is the CPU time the processes of now used since before (a
// process absent before counts from zero).
func CPUSince(before, now map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range now {
		d += t - before[pid]
	}
	return d
}

// ProcessCPU is this process's CPU time so far.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAverage is the machine's one-minute load average ("" if unknown).
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// QuerySampler samples, every interval, which statements the server
// processes of one database are running, to show where PostgreSQL spends
// its time during a benchmark (pg_stat_statements needs a server restart
// to load; this needs nothing).
type QuerySampler struct {
	mu      sync.Mutex
	counts  map[string]int
	samples int
	stop    chan struct{}
	done    chan struct{}
}

// SampleQueries starts sampling database name's active statements.
func SampleQueries(ctx context.Context, pool *pgxpool.Pool, name string, interval time.Duration) *QuerySampler {
	s := &QuerySampler{counts: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rows, err := pool.Query(ctx, `SELECT regexp_replace(left(query, 70), '\s+', ' ', 'g') FROM pg_stat_activity
				WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`, name)
			if err != nil {
				continue
			}
			qs, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.samples++
			for _, q := range qs {
				s.counts[q]++
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// Stop ends sampling and returns the statements seen most often, each with
// the average number of server processes running it.
func (s *QuerySampler) Stop(top int) []string {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	type qc struct {
		q string
		n int
	}
	var all []qc
	for q, n := range s.counts {
		all = append(all, qc{q, n})
	}
	slices.SortFunc(all, func(a, b qc) int { return b.n - a.n })
	var out []string
	for i, x := range all {
		if i == top || s.samples == 0 {
			break
		}
		out = append(out, fmt.Sprintf("%5.2f  %s", float64(x.n)/float64(s.samples), x.q))
	}
	return out
}
