package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/migrations"
	"github.com/waymark/waymark/rule"
)

// Targets of the lifecycle benchmark.
const (
	targetSweep  = 5 * time.Second // full sweep over 1M contacts, few moving
	targetDryRun = 5 * time.Second // dry run over 1M contacts
)

// cmdBenchSweep measures the lifecycle engine on a large database:
//
//	waymark-bench sweep [-contacts 1000000 -events 20000000 -keep]
//
// It creates (or, with -keep, reuses) the database waymark_bench_sweep,
// loads contacts and events with COPY, applies a journey of ten rules,
// settles every contact with one sweep, then times a sweep in which few
// contacts move, a dry run, and one GROUP BY computing the same aggregates
// in PostgreSQL alone.
func cmdBenchSweep(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("sweep", &cfg)
	contacts := fs.Int("contacts", 1_000_000, "contacts")
	events := fs.Int("events", 20_000_000, "events")
	keep := fs.Bool("keep", false, "keep the database for the next run, and reuse one of the same size")
	batch := fs.Int("batch", 0, "contacts per facts query (0: the engine's default)")
	parallel := fs.Int("parallel", 1, "experiment: sweep contact id ranges on this many connections at once")
	explain := fs.Bool("explain", false, "print EXPLAIN (ANALYZE, BUFFERS) of the facts query for one batch in the middle")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measured sweep and dry run to `file`")
	skipBaseline := fs.Bool("no-baseline", false, "skip the GROUP BY baseline")
	noSettle := fs.Bool("no-settle", false, "skip the settling sweep (the kept data was settled by an earlier run)")
	noJIT := fs.Bool("no-jit", false, "experiment: turn PostgreSQL's JIT off for the benchmark's connections")
	ingestEvents := fs.Int("ingest", 0, "instead of sweeping, measure /v1/batch ingestion of this many events without and with the ten rules, in one run")
	rounds := fs.Int("rounds", 5, "with -ingest: how many times to measure each, alternately (the medians are compared)")
	editorDryRun := fs.Bool("editor-dry-run", false, "also time the rule editor's dry run of a rule edit over every contact: POST /api/v1/rules/engaged-visitor/dry-run on the real API handler (target 5 s, as the sweep's)")
	if err := e.parse(fs, &cfg, "sweep", args); err != nil {
		return err
	}
	if *contacts <= 0 || *events < 0 || *parallel <= 0 {
		return errors.New("bench sweep: -contacts and -parallel must be positive, -events not negative")
	}
	out := e.stdout
	server, log, err := e.server(ctx, &cfg)
	if err != nil {
		return err
	}
	if *ingestEvents > 0 {
		if *rounds <= 0 {
			return errors.New("bench sweep: -rounds must be positive")
		}
		return benchIngestRules(ctx, e, cfg, server, *ingestEvents, *rounds, *cpuprofile, *keep, log)
	}
	size := bench.SweepSize{Contacts: *contacts, Events: *events}
	db, err := bench.OpenSweepDatabase(ctx, server, size, *keep)
	if err != nil {
		return err
	}
	defer func() {
		if *keep {
			fmt.Fprintf(out, "kept database %s (run again with -keep to reuse it)\n", db.Name)
			return
		}
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintf(e.stderr, "waymark-bench sweep: dropping %s: %v\n", db.Name, err)
		}
	}()
	pcfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = int32(*parallel + 3)
	if *noJIT {
		pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	tracer := &factsTracer{}
	pcfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		return err
	}
	fmt.Fprintf(out, "waymark-bench sweep: %d contacts, %d events, database %s\n", size.Contacts, size.Events, db.Name)
	if db.Reused {
		fmt.Fprintln(out, "data: reused from an earlier run")
	} else {
		fmt.Fprintln(out, "data: loading")
		l, err := bench.LoadSweepData(ctx, pool, size, time.Now(), out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "data: loaded in %s\n", l)
	}
	fmt.Fprintf(out, "sizes: %s\n", bench.SizeReport(ctx, pool))

	j, err := journey.Parse("sweep-journey.yaml", []byte(bench.SweepJourney))
	if err != nil {
		return err
	}
	base := store.New(pool)
	if _, err := base.ApplyJourney(ctx, j, false); err != nil {
		return err
	}
	rules := make([]lifecycle.Rule, len(j.Rules))
	for i, r := range j.Rules {
		rules[i] = lifecycle.Rule{Name: r.Name, From: r.From, To: r.To, When: j.Programs[r.Name]}
	}
	ps := make([]*rule.Program, len(rules))
	for i, r := range rules {
		ps[i] = r.When
	}
	needs := rule.Needs(ps...)
	fmt.Fprintf(out, "rules: %d, reading %d aggregates of %d event names\n", len(rules), len(needs), len(distinctEvents(needs)))

	// The activity rollup: built from all events the first time (and
	// whenever the rules need a property it lacks), folded afterwards.
	fold, err := base.FoldActivity(ctx, needs)
	if err != nil {
		return err
	}
	if fold.Rebuilt {
		fmt.Fprintf(out, "activity rollup: built from all events in %.1fs (%d contacts); sizes: %s\n", fold.Elapsed.Seconds(), fold.Contacts, bench.SizeReport(ctx, pool))
	} else {
		fmt.Fprintf(out, "activity rollup: folded new events in %.2fs (%d contacts)\n", fold.Elapsed.Seconds(), fold.Contacts)
	}

	// Settle everyone first with the engine as it is, so that the
	// measured sweep is the steady state: few contacts move.
	if !*noSettle || !db.Reused {
		settle := lifecycle.NewEngine(base, log)
		st, err := settle.Sweep(ctx, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "settling sweep (engine as is): %s\n", sweepStatsText(st))
	}
	fmt.Fprintf(out, "stages: %s\n", stageLine(ctx, base))

	var ls lifecycle.Store = base
	variant := "engine as is"
	if *parallel > 1 {
		variant += fmt.Sprintf(", %d partitions in parallel", *parallel)
	}
	if *batch > 0 {
		variant += fmt.Sprintf(", batch %d", *batch)
	}
	engines := sweepEngines(ls, *parallel, int64(size.Contacts), *batch, log)

	stop := func() {}
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		stop = func() { pprof.StopCPUProfile(); pf.Close(); fmt.Fprintf(out, "CPU profile: %s\n", *cpuprofile) }
	}
	fmt.Fprintf(out, "\nmeasuring (%s):\n", variant)
	// CPU: this process's, and the server processes' serving this
	// database (other databases' load on a shared machine left out).
	cpu := func() func() string {
		self, pg := bench.ProcessCPU(), bench.DatabaseCPU(ctx, pool, db.Name)
		return func() string {
			return fmt.Sprintf("CPU: waymark %.2fs, PostgreSQL %.2fs; load average %s on %d cores",
				(bench.ProcessCPU() - self).Seconds(), bench.CPUSince(pg, bench.DatabaseCPU(ctx, pool, db.Name)).Seconds(), bench.LoadAverage(), runtime.NumCPU())
		}
	}
	measured := cpu()
	sw, err := runEngines(engines, func(eng *lifecycle.Engine) (lifecycle.SweepStats, error) { return eng.Sweep(ctx, time.Now()) })
	if err != nil {
		stop()
		return err
	}
	fmt.Fprintf(out, "  sweep:    %s  %s (target %s)\n            %s\n", sweepStatsText(sw), sweepVerdict(sw.Elapsed <= targetSweep), targetSweep, measured())
	measured = cpu()
	dr, err := runEngines(engines, func(eng *lifecycle.Engine) (lifecycle.SweepStats, error) {
		_, st, err := eng.DryRun(ctx, rules, time.Now())
		return st, err
	})
	stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  dry run:  %s  %s (target %s)\n            %s\n", sweepStatsText(dr), sweepVerdict(dr.Elapsed <= targetDryRun), targetDryRun, measured())
	if *editorDryRun {
		if err := benchEditorDryRun(ctx, base, log, out); err != nil {
			return fmt.Errorf("editor dry run: %w", err)
		}
	}
	if !*skipBaseline {
		n, d, err := bench.Baseline(ctx, pool, needs, time.Now())
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		fmt.Fprintf(out, "  baseline: one GROUP BY contact_id over events, same %d aggregates: %d rows in %.2fs\n", len(needs), n, d.Seconds())
	}
	if *explain {
		if err := explainFacts(ctx, pool, tracer, int64(size.Contacts/2), out); err != nil {
			return err
		}
	}
	return nil
}

func distinctEvents(needs []rule.Aggregate) map[string]bool {
	m := map[string]bool{}
	for _, a := range needs {
		m[a.Event] = true
	}
	return m
}

func sweepEngines(st lifecycle.Store, n int, maxID int64, batch int, log *slog.Logger) []*lifecycle.Engine {
	stores := []lifecycle.Store{st}
	if n > 1 {
		stores = bench.Partition(st, n, maxID)
	}
	out := make([]*lifecycle.Engine, len(stores))
	for i, s := range stores {
		out[i] = lifecycle.NewEngine(s, log)
		if batch > 0 {
			out[i].BatchSize, out[i].SweepBatchSize = batch, batch
		}
	}
	return out
}

// runEngines runs fn on every engine at once and adds up their stats; the
// elapsed time is the wall time of the whole.
func runEngines(engines []*lifecycle.Engine, fn func(*lifecycle.Engine) (lifecycle.SweepStats, error)) (lifecycle.SweepStats, error) {
	start := time.Now()
	var (
		mu    sync.Mutex
		total lifecycle.SweepStats
		first error
		wg    sync.WaitGroup
	)
	for _, eng := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := fn(eng)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			total.Contacts += st.Contacts
			total.Moved += st.Moved
			total.Hops += st.Hops
			total.Errors += st.Errors
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total, first
}

func sweepStatsText(st lifecycle.SweepStats) string {
	s := fmt.Sprintf("%.2fs, %d contacts, %d moved (%d hops)", st.Elapsed.Seconds(), st.Contacts, st.Moved, st.Hops)
	if st.Errors > 0 {
		s += fmt.Sprintf(", %d errors", st.Errors)
	}
	return s
}

func sweepVerdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func stageLine(ctx context.Context, st *store.Store) string {
	counts, err := st.StageCounts(ctx)
	if err != nil {
		return err.Error()
	}
	parts := make([]string, 0, len(rule.Stages))
	for _, s := range rule.Stages {
		parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
	}
	return strings.Join(parts, ", ")
}

// factsTracer remembers the engine's facts query for a page of contacts,
// so that -explain shows the real one.
type factsTracer struct {
	mu   sync.Mutex
	sql  string
	args []any
}

func (t *factsTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "AS aggs") && strings.Contains(d.SQL, "c.id > ") {
		t.mu.Lock()
		if t.sql == "" {
			t.sql, t.args = d.SQL, append([]any(nil), d.Args...)
		}
		t.mu.Unlock()
	}
	return ctx
}

func (t *factsTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func explainFacts(ctx context.Context, pool *pgxpool.Pool, t *factsTracer, after int64, out interface{ Write([]byte) (int, error) }) error {
	t.mu.Lock()
	sql, args := t.sql, append([]any(nil), t.args...)
	t.mu.Unlock()
	if sql == "" {
		return errors.New("explain: no facts query was seen")
	}
	args[len(args)-2] = after
	rows, err := pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	fmt.Fprintf(out, "\nEXPLAIN (ANALYZE, BUFFERS) of the engine's facts query, %v contacts after id %d:\n", args[len(args)-1], after)
	for _, l := range lines {
		fmt.Fprintln(out, "  "+l)
	}
	return nil
}

// benchIngestRules measures /v1/batch ingestion twice in one run, on fresh
// databases: without rules, then with the sweep benchmark's ten rules
// applied, so that every ingested batch is also evaluated at once by the
// server's reactor (and by its scheduled sweep), and reports the ratio.
//
// The two are measured alternately, rounds times, and their medians are
// compared: on a shared machine one measurement of each says more about
// the neighbours than about the rules.
func benchIngestRules(ctx context.Context, e *env, cfg config.Config, server string, events, rounds int, cpuprofile string, keep bool, log *slog.Logger) error {
	out := e.stdout
	f := &benchFlags{cfg: cfg, events: events, batch: 500, clients: 8, users: 100_000}
	b := &benchRun{e: e, f: f, server: server, log: log}
	j, err := journey.Parse("sweep-journey.yaml", []byte(bench.SweepJourney))
	if err != nil {
		return err
	}
	var (
		rates, cpus [2][]float64
		advice      string // what the server's settings lack, if anything
	)
	for round := 1; round <= rounds; round++ {
		last := round == rounds
		for i, withRules := range []bool{false, true} {
			name := "without rules"
			if withRules {
				name = "with the ten rules applied (event-driven evaluation on)"
			}
			fmt.Fprintf(out, "\n== round %d/%d: ingest %s: %d events to /v1/batch, %d per request, %d clients, %d users\n", round, rounds, name, f.events, f.batch, f.clients, f.users)
			// -keep keeps the last round's database with rules, to
			// look into afterwards.
			f.keep = keep && last && withRules
			dbCfg, drop, err := b.database(ctx, "ingest")
			if err != nil {
				return err
			}
			srv, err := b.startServer(ctx, dbCfg)
			if err != nil {
				drop()
				return err
			}
			if round == 1 && !withRules {
				// Evaluation reads each touched contact's older events:
				// how much of them PostgreSQL keeps in its own buffers
				// decides much of its cost, so say how much that is.
				var sb string
				if err := srv.pool.QueryRow(ctx, `SHOW shared_buffers`).Scan(&sb); err == nil {
					fmt.Fprintf(out, "  PostgreSQL shared_buffers: %s\n", sb)
				}
				advice = pgserver.SettingsAdvice(ctx, srv.pool)
			}
			st := store.New(srv.pool)
			if withRules {
				if _, err := st.ApplyJourney(ctx, j, false); err != nil {
					srv.stop()
					srv.pool.Close()
					drop()
					return err
				}
			}
			gen := bench.NewGen(f.users, time.Now().Add(-30*24*time.Hour), "ingest")
			stop := func() {}
			if withRules && last && cpuprofile != "" {
				pf, err := os.Create(cpuprofile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				stop = func() { pprof.StopCPUProfile(); pf.Close(); fmt.Fprintf(out, "  CPU profile: %s\n", cpuprofile) }
			}
			dbName := bench.DefaultName("ingest")
			self, pg := bench.ProcessCPU(), bench.DatabaseCPU(ctx, srv.pool, dbName)
			sampler := bench.SampleQueries(ctx, srv.pool, dbName, 20*time.Millisecond)
			res, err := bench.Ingest(ctx, bench.IngestOptions{
				URL: "http://" + srv.addr, WriteKey: dbCfg.WriteKey, Gen: gen,
				Events: f.events, Batch: f.batch, Clients: f.clients, Progress: io.Discard,
			})
			// Evaluation runs behind ingestion: the run ends when the
			// last touched contact has been evaluated, not at the last
			// acknowledgement, or deferring evaluation would look free.
			drain := waitIdle(ctx, srv.app)
			stop()
			busy := sampler.Stop(8)
			selfCPU, pgCPU := (bench.ProcessCPU() - self).Seconds(), bench.CPUSince(pg, bench.DatabaseCPU(ctx, srv.pool, dbName)).Seconds()
			cpuText := fmt.Sprintf("CPU: waymark (server and load generator) %.1fs, PostgreSQL %.1fs (%.1f ms per 1,000 events); load average %s",
				selfCPU, pgCPU, (selfCPU+pgCPU)*1e6/float64(max(res.Events, 1)), bench.LoadAverage())
			if serr := srv.stop(); serr != nil && err == nil {
				err = serr
			}
			var moved int64
			if err == nil {
				err = srv.pool.QueryRow(ctx, `SELECT count(*) FROM transitions WHERE trigger = 'event'`).Scan(&moved)
			}
			srv.pool.Close()
			drop()
			if err != nil {
				return err
			}
			rate := float64(res.Events) / (res.Elapsed + drain).Seconds()
			rates[i] = append(rates[i], rate)
			cpus[i] = append(cpus[i], (selfCPU+pgCPU)/float64(max(res.Events, 1))*1e6)
			fmt.Fprintf(out, "  %.0f events/s ingested and evaluated (%d events acknowledged in %.2fs, %.0f/s; the last touched contact evaluated %s later; %d requests failed); p99 %s a request; %d moves on events recorded\n  %s\n",
				rate, res.Events, res.Elapsed.Seconds(), res.Rate(), ms(drain), res.Failed, ms(res.Latency.P99), moved, cpuText)
			if last {
				fmt.Fprintln(out, "  PostgreSQL's busiest statements (server processes running each, on average):")
				for _, l := range busy {
					fmt.Fprintln(out, "    "+l)
				}
			}
		}
	}
	without, with := median(rates[0]), median(rates[1])
	ratio := with / without
	fmt.Fprintf(out, "\nmedians of %d rounds: %.0f events/s without rules (%s), %.0f with (%s); CPU (waymark and PostgreSQL) %.0f vs %.0f ms per 1,000 events\n",
		rounds, without, spread(rates[0]), with, spread(rates[1]), median(cpus[0]), median(cpus[1]))
	// Each round's pair was measured back to back: their ratios say how
	// much of the spread is the machine's.
	ratios := make([]float64, len(rates[1]))
	for i := range ratios {
		ratios[i] = rates[1][i] / rates[0][i]
	}
	fmt.Fprintf(out, "ratio per round: %s (median %.0f%%)\n", percents(ratios), 100*median(ratios))
	fmt.Fprintf(out, "ingestion with rules: %.0f%% of its speed without (target ≥ 75%%): %s\n", 100*ratio, sweepVerdict(ratio >= 0.75))
	if advice != "" {
		fmt.Fprintf(out, "note: measured below Waymark's documented settings. %s\n", advice)
	}
	return nil
}

// waitIdle waits until the reactor has evaluated every contact touched so
// far and returns how long that took.
//
// The writer hands a batch's contacts to the reactor just after
// acknowledging it, so idle counts only when seen twice 5 ms apart (the
// figure errs by up to that much on the slow side).
func waitIdle(ctx context.Context, a *app.App) time.Duration {
	start := time.Now()
	for idle := 0; idle < 2 && ctx.Err() == nil && time.Since(start) < time.Minute; {
		if a.Idle() {
			idle++
		} else {
			idle = 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// spread is the range of xs: "min–max".
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "none"
	}
	return fmt.Sprintf("%.0f–%.0f", slices.Min(xs), slices.Max(xs))
}

func percents(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f%%", 100*x)
	}
	return strings.Join(parts, ", ")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchEditorDryRun times the rule editor's dry run through the API
// handler, as the dashboard's editor and the API call it: one rule edited
// (engaged-visitor, made easier), every contact evaluated with the stored
// rules and the edit, nothing changed.
func benchEditorDryRun(ctx context.Context, st *store.Store, log *slog.Logger, out io.Writer) error {
	h := web.New(web.Config{Store: st, Engine: lifecycle.NewEngine(st, log), Log: log, RatePerSecond: 1e6, Burst: 1e6})
	keyName := "bench-sweep-editor-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	key, err := st.CreateAPIKey(ctx, keyName)
	if err != nil {
		return err
	}
	defer func() { _, _ = st.RevokeAPIKey(context.Background(), keyName) }()
	body := `{"from": ["awareness"], "to": "consideration", "when": "count(\"page_viewed\", \"14d\") >= 2 || count(\"email_clicked\", \"14d\") >= 1"}`
	for i := 1; i <= 2; i++ {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/v1/rules/engaged-visitor/dry-run", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		self := bench.ProcessCPU()
		start := time.Now()
		h.ServeHTTP(rec, req)
		d := time.Since(start)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("%d: %s", rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
		}
		var res struct {
			Summary  string `json:"summary"`
			Contacts int    `json:"contacts_evaluated"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			return err
		}
		fmt.Fprintf(out, "  editor dry run %d (POST /api/v1/rules/engaged-visitor/dry-run): %.2fs, %d contacts, %s  %s (target %s); CPU: waymark %.2fs\n",
			i, d.Seconds(), res.Contacts, res.Summary, sweepVerdict(d <= targetDryRun), targetDryRun, (bench.ProcessCPU() - self).Seconds())
	}
	return nil
}
