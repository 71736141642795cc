package bench

// The lifecycle sweep benchmark: a database of N contacts and M events
// loaded straight into the schema's tables with COPY, ten realistic rules,
// and the pieces to time the engine's Sweep and DryRun against one plain
// GROUP BY over the same events. It also holds the one experiment still
// measured (parallel partitions, which wrap lifecycle.Store so that the
// engine itself runs unchanged); the others tried while looking for a
// sweep that fits the target (fact loaders with another query shape, a
// per-contact activity rollup in Go) ended when the store's own rollup
// replaced them (docs/figures.md).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/waymark/waymark/internal/pgserver"
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
	return OpenSweepDatabaseNamed(ctx, serverURL, SweepDatabaseName, size, reuse)
}

// OpenSweepDatabaseNamed is OpenSweepDatabase for a database of another
// name (a benchmark that keeps several sizes).
func OpenSweepDatabaseNamed(ctx context.Context, serverURL, name string, size SweepSize, reuse bool) (*SweepDB, error) {
	u, err := pgserver.WithDatabase(serverURL, name)
	if err != nil {
		return nil, err
	}
	d := &SweepDB{Name: name, URL: u, server: serverURL}
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
	g, gctx := errgroup.WithContext(ctx)
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
	g, gctx = errgroup.WithContext(ctx)
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

// SizeReport describes the tables' sizes.
func SizeReport(ctx context.Context, pool *pgxpool.Pool) string {
	var ev, idx, ct, act string
	_ = pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_table_size('events')), pg_size_pretty(pg_indexes_size('events')),
		pg_size_pretty(pg_total_relation_size('contacts')),
		coalesce(pg_size_pretty(pg_total_relation_size(to_regclass('activity'))), '-')`).Scan(&ev, &idx, &ct, &act)
	return fmt.Sprintf("events %s + indexes %s, contacts %s, activity rollup %s", ev, idx, ct, act)
}
