package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
)

// targetPage is the dashboard's target: every page in under 200 ms with a
// million contacts (judged on the 95th percentile; the maximum is shown).
const targetPage = 200 * time.Millisecond

// targetReportRefresh is the reports' refresh target (issue 21), after
// activityEmails emails' half minute of activity.
const (
	targetReportRefresh = time.Second
	activityEmails      = 1000
)

// cmdBenchDashboard measures the dashboard and the management API on a
// database of a million contacts:
//
//	waymark-bench dashboard [-contacts 1000000 -events 20000000] [-copy-from waymark_bench_sweep] [-rounds 20] [-keep]
//
// The database (-db, default waymark_bench_dash) is reused when an earlier
// run kept it (-keep); otherwise it is copied from -copy-from (CREATE DATABASE
// ... TEMPLATE, e.g. the sweep benchmark's kept database) or built with
// the sweep benchmark's generator, then given the example journey and a
// generated two years of its history (moves, enrolments, emails, opens,
// clicks, offers, unsubscribes). The run refreshes the rollups in full
// (timed), then requests every page and endpoint through the real handler
// over HTTP on loopback with a real API key and dashboard session.
func cmdBenchDashboard(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("dashboard", &cfg)
	dbName := fs.String("db", bench.DashboardDatabaseName, "the benchmark's database (created, or reused when an earlier run kept it)")
	from := fs.String("copy-from", "", "copy this database (e.g. "+bench.SweepDatabaseName+", kept by 'waymark-bench sweep -keep') instead of generating contacts and events; nothing may be connected to it")
	contacts := fs.Int("contacts", 1_000_000, "contacts to generate (without -from)")
	events := fs.Int("events", 20_000_000, "events to generate (without -from)")
	rounds := fs.Int("rounds", 20, "requests of each page and endpoint (after one warm-up round)")
	random := fs.Int("random-contacts", 5, "contacts picked at random whose journey is opened, besides the busiest ones")
	journeyFile := fs.String("journey", "examples/journey.yaml", "the journey applied to the data")
	keep := fs.Bool("keep", false, "keep the database for the next run (which then reuses it as it is)")
	rebuild := fs.Bool("rebuild", false, "regenerate the journey's history even if the database holds one")
	dryRun := fs.Bool("dry-run", false, "also time one dry run of a rule edit from the rule editor (target 5 s, as the sweep's)")
	if err := e.parse(fs, &cfg, "dashboard", args); err != nil {
		return err
	}
	if *contacts <= 0 || *events < 0 || *rounds <= 0 || *random < 0 {
		return errors.New("bench dashboard: -contacts and -rounds must be positive, -events and -random-contacts not negative")
	}
	if *dbName == "" || *dbName == *from {
		return errors.New("bench dashboard: -db must name a database other than -copy-from")
	}
	j, err := journey.Load(*journeyFile)
	if err != nil {
		return fmt.Errorf("bench dashboard: -journey: %w (run from the repository's root, or name the file)", err)
	}
	out := e.stdout
	server, log, err := e.server(ctx, &cfg)
	if err != nil {
		return err
	}
	dbURL, state, err := openDashDatabase(ctx, server, *dbName, *from, out)
	if err != nil {
		return err
	}
	defer func() {
		if *keep {
			fmt.Fprintf(out, "kept database %s (run again with -keep to reuse it)\n", *dbName)
			return
		}
		if err := bench.DropDatabase(context.Background(), server, *dbName); err != nil {
			fmt.Fprintf(e.stderr, "waymark-bench dashboard: dropping %s: %v\n", *dbName, err)
		} else {
			fmt.Fprintf(out, "dropped database %s\n", *dbName)
		}
	}()
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		return err
	}
	st := store.New(pool)
	now := time.Now()

	if state == "empty" {
		size := bench.SweepSize{Contacts: *contacts, Events: *events}
		fmt.Fprintf(out, "data: generating %d contacts and %d events (the sweep benchmark's generator)\n", size.Contacts, size.Events)
		l, err := bench.LoadSweepData(ctx, pool, size, now, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "data: loaded in %s\n", l)
	}
	if state != "ready" || *rebuild {
		fmt.Fprintf(out, "journey: applying %s\n", *journeyFile)
		if _, err := st.ApplyJourney(ctx, j, false); err != nil {
			return err
		}
		fmt.Fprintln(out, "history: generating the journey's moves, emails, opens, clicks, offers and unsubscribes")
		d, err := bench.LoadDashboardData(ctx, pool, now, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "history: %s\n", d)
		if _, err := pool.Exec(ctx, `INSERT INTO bench_dash_meta VALUES (true, now(), $1)`, d.String()); err != nil {
			return err
		}
	} else {
		var summary string
		_ = pool.QueryRow(ctx, `SELECT summary FROM bench_dash_meta`).Scan(&summary)
		fmt.Fprintf(out, "data: reused from an earlier run (%s)\n", summary)
	}
	var nContacts, nEvents, nMoves, nSends int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM contacts), (SELECT reltuples::bigint FROM pg_class WHERE oid = 'events'::regclass),
		(SELECT count(*) FROM transitions), (SELECT count(*) FROM sends)`).Scan(&nContacts, &nEvents, &nMoves, &nSends); err != nil {
		return err
	}
	fmt.Fprintf(out, "database %s: %d contacts, ~%d events, %d stage moves, %d emails; stages: %s\n", *dbName, nContacts, nEvents, nMoves, nSends, stageLine(ctx, st))
	if nContacts < 1_000_000 {
		fmt.Fprintf(out, "note: fewer than 1,000,000 contacts; the target is stated for a million\n")
	}

	// The rollups: a full refresh (what a first start or an import of old
	// history costs), then the incremental one the server runs every 30 s.
	t := time.Now()
	if _, err := st.RefreshStats(ctx, time.Now(), true); err != nil {
		return err
	}
	full := time.Since(t)
	var incr []time.Duration
	for range 3 {
		t = time.Now()
		if _, err := st.RefreshStats(ctx, time.Now(), false); err != nil {
			return err
		}
		incr = append(incr, time.Since(t))
	}
	fmt.Fprintf(out, "rollups: full refresh %.2fs; incremental refresh (every 30 s in serve) %s\n", full.Seconds(), durList(incr))

	// What marketing earned (issue 21): attribution's pass over the
	// history (the first one takes every order stored; on a kept database,
	// what came since), the reports' rollups built from the tables; then
	// the refresh serve runs every 30 s (attribution, then the rollups),
	// each after a busy half minute's activity.
	t = time.Now()
	credited, err := st.AttributeConversions(ctx, time.Now())
	if err != nil {
		return err
	}
	attribution := time.Since(t)
	t = time.Now()
	if err := st.RefreshReports(ctx, time.Now(), true); err != nil {
		return err
	}
	build := time.Since(t)
	var rincr []time.Duration
	for range 3 {
		if err := bench.AddActivity(ctx, pool, time.Now(), activityEmails); err != nil {
			return err
		}
		t = time.Now()
		if err := app.RefreshReports(ctx, st, time.Now(), false); err != nil {
			return err
		}
		rincr = append(rincr, time.Since(t))
	}
	var missedRefresh bool
	for _, d := range rincr {
		missedRefresh = missedRefresh || d > targetReportRefresh
	}
	fmt.Fprintf(out, "reports: attribution %.2fs (%d conversions); rollups built in %.2fs; refresh after a busy half minute (%d emails, %d opens, %d clicks, %d orders) %s %s (target %s)\n",
		attribution.Seconds(), credited, build.Seconds(), activityEmails, activityEmails/2, activityEmails/5, activityEmails/10, durList(rincr), sweepVerdict(!missedRefresh), targetReportRefresh)

	// The real handler on a real listener; the API's per-key rate limit is
	// raised so that it measures the pages, not the limiter.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h := web.New(web.Config{Store: st, Engine: lifecycle.NewEngine(st, log), Log: log, RatePerSecond: 1e6, Burst: 1e6})
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	keyName := "bench-dashboard-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	key, err := st.CreateAPIKey(ctx, keyName)
	if err != nil {
		return err
	}
	defer func() { _, _ = st.RevokeAPIKey(context.Background(), keyName) }()
	client, err := bench.DashLogin(ctx, base, key)
	if err != nil {
		return err
	}

	ids, why, err := bench.DashContacts(ctx, pool, *random)
	if err != nil {
		return err
	}
	reqs, err := dashRequests(ctx, pool, ids, why)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmeasuring %d pages and endpoints, %d rounds after one warm-up round (its time: first), one request at a time, over HTTP on loopback:\n", len(reqs), *rounds)
	res, err := bench.MeasureDashboard(ctx, client, reqs, *rounds)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %-58s %9s %9s %9s %9s %9s\n", "page", "first", "p50", "p95", "max", "bytes")
	var missed []string
	var worst time.Duration
	for _, r := range res {
		v := ""
		if r.Latency.P95 > targetPage {
			v = "  MISSED"
			missed = append(missed, r.Request.Name)
		}
		worst = max(worst, r.Latency.P95)
		fmt.Fprintf(out, "  %-58s %9s %9s %9s %9s %9d%s\n", r.Request.Name, ms(r.First), ms(r.Latency.P50), ms(r.Latency.P95), ms(r.Latency.Max), r.Bytes, v)
	}
	if len(missed) == 0 {
		fmt.Fprintf(out, "every page and endpoint within %s at p95 (worst p95 %s): ok\n", targetPage, ms(worst))
	} else {
		fmt.Fprintf(out, "over %s at p95: %s: MISSED\n", targetPage, strings.Join(missed, ", "))
	}
	if *dryRun {
		form := url.Values{"action": {"dry-run"}, "from": {"awareness"}, "to": {"consideration"},
			"when": {`count("page_viewed", "14d") >= 2 || count("email_clicked", "14d") >= 1`}}
		_, body, d, err := client.Do(ctx, bench.DashRequest{Name: "rule editor: dry run", Method: http.MethodPost,
			Path: "/dashboard/rules/engaged-visitor", Body: form.Encode() + "&csrf=" + client.CSRF, Want: http.StatusOK})
		if err != nil {
			return err
		}
		summary := "?"
		if i := strings.Index(string(body), "would move"); i >= 0 {
			summary = string(body[i:min(len(body), i+80)])
			summary = summary[:strings.IndexAny(summary+"<", "<")]
		}
		fmt.Fprintf(out, "rule editor dry run over every contact: %.2fs (%s) %s (target %s)\n", d.Seconds(), strings.TrimSpace(summary), sweepVerdict(d <= targetDryRun), targetDryRun)
	}
	if len(missed) > 0 {
		return fmt.Errorf("bench dashboard: %d of %d pages over %s at p95", len(missed), len(reqs), targetPage)
	}
	return nil
}

// dashRequests lists what is measured: every dashboard page, and the
// management API's main endpoints.
func dashRequests(ctx context.Context, pool *pgxpool.Pool, ids []int64, why []string) ([]bench.DashRequest, error) {
	var email string
	if err := pool.QueryRow(ctx, `SELECT email FROM contacts WHERE id = $1`, ids[len(ids)-1]).Scan(&email); err != nil {
		return nil, fmt.Errorf("reading a contact's email: %w", err)
	}
	var rule, template string
	if err := pool.QueryRow(ctx, `SELECT name FROM rules ORDER BY position LIMIT 1`).Scan(&rule); err != nil {
		return nil, fmt.Errorf("reading a rule: %w", err)
	}
	if err := pool.QueryRow(ctx, `SELECT name FROM templates ORDER BY name LIMIT 1`).Scan(&template); err != nil {
		return nil, fmt.Errorf("reading a template: %w", err)
	}
	var from []string
	var to, when string
	if err := pool.QueryRow(ctx, `SELECT from_stages, to_stage, condition FROM rules WHERE name = $1`, rule).Scan(&from, &to, &when); err != nil {
		return nil, err
	}
	compile, _ := json.Marshal(map[string]string{"when": when + " && count(\"page_viewed\", \"7d\") >= 1"})
	check := url.Values{"action": {"check"}, "from": from, "to": {to}, "when": {when}}
	g := func(name, path string, want int) bench.DashRequest {
		return bench.DashRequest{Name: name, Method: http.MethodGet, Path: path, Want: want}
	}
	api := func(name, path string) bench.DashRequest {
		return bench.DashRequest{Name: "api: " + name, Method: http.MethodGet, Path: path, Want: http.StatusOK, API: true}
	}
	q := url.QueryEscape
	reqs := []bench.DashRequest{
		g("overview", "/dashboard/", 200),
		g("journey health", "/dashboard/health", 200),
	}
	for i, id := range ids {
		reqs = append(reqs, g(fmt.Sprintf("contact's journey %d (%s)", id, why[i]), fmt.Sprintf("/dashboard/contacts/%d", id), 200))
	}
	reqs = append(reqs,
		g("contacts: search by email (answers 303 to the contact)", "/dashboard/contacts?q="+q(email), http.StatusSeeOther),
		g("contacts: search, no such email", "/dashboard/contacts?q="+q("nobody-at-all@example.com"), 200),
		g("contacts: newest", "/dashboard/contacts", 200),
		g("contacts: in advocacy", "/dashboard/contacts?stage=advocacy", 200),
		g("sequences & templates", "/dashboard/sequences", 200),
		g("reports by template", "/dashboard/reports", 200),
		g("reports by step, largest revenue first", "/dashboard/reports?by=step&sort=-revenue", 200),
		g("reports as CSV, by tone", "/dashboard/reports.csv?by=tone", 200),
		g("rules", "/dashboard/rules", 200),
		g("rule editor", "/dashboard/rules/"+url.PathEscape(rule), 200),
		bench.DashRequest{Name: "rule editor: check as you type", Method: http.MethodPost, Path: "/dashboard/compile", Body: string(compile), Want: 200},
		bench.DashRequest{Name: "rule editor: check button", Method: http.MethodPost, Path: "/dashboard/rules/" + url.PathEscape(rule), Body: check.Encode(), Want: 200},
		api("contacts", "/api/v1/contacts"),
		api("contacts by email", "/api/v1/contacts?email="+q(email)),
		api("contacts by id", fmt.Sprintf("/api/v1/contacts?id=%d", ids[0])),
		api("contacts in advocacy, newest", "/api/v1/contacts?stage=advocacy&sort=-created_at"),
		api("contact", fmt.Sprintf("/api/v1/contacts/%d", ids[0])),
		api(fmt.Sprintf("timeline %d (%s)", ids[0], why[0]), fmt.Sprintf("/api/v1/contacts/%d/timeline", ids[0])),
		api(fmt.Sprintf("timeline %d (%s)", ids[len(ids)-1], why[len(why)-1]), fmt.Sprintf("/api/v1/contacts/%d/timeline", ids[len(ids)-1])),
		api("rules", "/api/v1/rules"),
		api("tones", "/api/v1/tones"),
		api("templates", "/api/v1/templates"),
		api("template preview", fmt.Sprintf("/api/v1/templates/%s/preview?contact=%d", url.PathEscape(template), ids[len(ids)-1])),
		api("sequences", "/api/v1/sequences"),
		api("offers", "/api/v1/offers"),
		api("suppressions", "/api/v1/suppressions"),
		api("stats (overview)", "/api/v1/stats"),
		api("stats/health", "/api/v1/stats/health"),
		api("stats/sequences", "/api/v1/stats/sequences"),
		api("reports by template", "/api/v1/reports?by=template"),
		api("reports by tone", "/api/v1/reports?by=tone"),
		api("reports by stage", "/api/v1/reports?by=stage"),
		api("reports by step, as CSV", "/api/v1/reports?by=step&format=csv"),
		api("reports: holdouts", "/api/v1/reports/holdouts"),
		api("reports: A/B tests", "/api/v1/reports/abtests"),
		api("reports: stages", "/api/v1/reports/stages"),
		api("reports: revenue per day", "/api/v1/reports/days"),
		bench.DashRequest{Name: "api: compile", Method: http.MethodPost, Path: "/api/v1/compile", Body: string(compile), Want: 200, API: true},
	)
	return reqs, nil
}

// openDashDatabase finds or makes the benchmark's database and says what
// it holds: "ready" (an earlier run's complete data), "contacts" (contacts
// and events without the journey's history: a copy of -copy-from, or an
// interrupted run) or "empty".
func openDashDatabase(ctx context.Context, server, name, from string, out interface{ Write([]byte) (int, error) }) (string, string, error) {
	dbURL, err := pgserver.WithDatabase(server, name)
	if err != nil {
		return "", "", err
	}
	if sc, err := pgx.ParseConfig(server); err == nil && sc.Database == name {
		return "", "", fmt.Errorf("bench dashboard: -db %s is the database the connection names (DATABASE_URL): name another", name)
	}
	var exists bool
	if err := bench.Admin(ctx, server, 10*time.Minute, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	}); err != nil {
		return "", "", err
	}
	if exists {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return "", "", err
		}
		defer conn.Close(context.Background())
		// Only a benchmark's database is reused, filled or dropped: a
		// -db naming a real one must not lose its journey's history.
		var isBench bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass('bench_dash_meta') IS NOT NULL OR to_regclass('bench_sweep_meta') IS NOT NULL
			OR NOT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public')`).Scan(&isBench); err != nil {
			return "", "", err
		}
		if !isBench {
			return "", "", fmt.Errorf("bench dashboard: database %s exists and is not a benchmark's (it has tables, but no bench_dash_meta or bench_sweep_meta): name another with -db", name)
		}
		var complete bool
		if err := conn.QueryRow(ctx, `SELECT coalesce((SELECT complete FROM bench_dash_meta LIMIT 1), false)`).Scan(&complete); err == nil && complete {
			return dbURL, "ready", nil
		}
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM contacts LIMIT 1) x`).Scan(&n); err == nil && n > 0 {
			fmt.Fprintf(out, "data: database %s holds contacts but no journey history yet\n", name)
			return dbURL, "contacts", nil
		}
		if err := bench.DropDatabase(ctx, server, name); err != nil {
			return "", "", err
		}
	}
	if from != "" {
		fmt.Fprintf(out, "data: copying database %s into %s\n", from, name)
		t := time.Now()
		// A template copy needs nobody connected to the source: retry a
		// while if someone is.
		for attempt := 0; ; attempt++ {
			err = bench.Admin(ctx, server, 10*time.Minute, func(c *pgx.Conn) error {
				_, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{from}.Sanitize())
				return err
			})
			var pg *pgconn.PgError
			if err == nil || !errors.As(err, &pg) || pg.Code != "55006" || attempt >= 20 {
				break
			}
			select {
			case <-ctx.Done():
				return "", "", ctx.Err()
			case <-time.After(3 * time.Second):
			}
		}
		if err != nil {
			return "", "", fmt.Errorf("copying database %s (-copy-from) into %s: %w", from, name, err)
		}
		fmt.Fprintf(out, "data: copied in %.1fs\n", time.Since(t).Seconds())
		return dbURL, "contacts", nil
	}
	if err := bench.Admin(ctx, server, 10*time.Minute, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		return err
	}); err != nil {
		return "", "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return dbURL, "empty", nil
}

func durList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = ms(d)
	}
	return strings.Join(parts, ", ")
}
