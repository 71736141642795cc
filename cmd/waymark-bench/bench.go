package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
)

// Targets of the ingestion benchmarks.
const (
	targetIngestRate  = 80_000 // events/s through /v1/batch
	targetImportRatio = 2.0    // waymark import time / bare COPY time
	targetTrackP99    = 10 * time.Millisecond
)

type benchFlags struct {
	cfg           config.Config
	events        int
	batch         int
	clients       int
	users         int
	rate          float64
	duration      time.Duration
	warmup        time.Duration
	importChunk   int
	importWorkers int
	dir           string
	cpuprofile    string
	keep          bool
}

// cmdBench measures ingestion against its targets, each run on a fresh
// database and a real server started in this process:
//
//	waymark-bench ingest [-events 2000000 -batch 500 -clients 8]
//	waymark-bench import [-events 2000000]
//	waymark-bench track  [-rate 1000 -duration 20s]
//	waymark-bench all
func cmdBench(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(e.stderr, "usage: waymark-bench ingest|import|track|all [flags]\n\nRun 'waymark-bench ingest -h' for the flags.")
		return errors.New("bench: name what to measure: ingest, import, track or all")
	}
	what := args[0]
	var f benchFlags
	fs := e.flags(what, &f.cfg)
	fs.IntVar(&f.events, "events", 2_000_000, "events to send (ingest) or import (import)")
	fs.IntVar(&f.batch, "batch", 500, "ingest: events per /v1/batch request")
	fs.IntVar(&f.clients, "clients", 8, "ingest: concurrent clients")
	fs.IntVar(&f.users, "users", 100_000, "distinct userIds")
	fs.Float64Var(&f.rate, "rate", 1000, "track: requests per second (open loop)")
	fs.DurationVar(&f.duration, "duration", 20*time.Second, "track: how long to measure")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "track: sent at the same rate before measuring")
	fs.IntVar(&f.importChunk, "import-chunk", 0, "import: -chunk passed to waymark import (0: its default)")
	fs.IntVar(&f.importWorkers, "import-workers", 0, "import: -workers passed to waymark import (0: its default)")
	fs.StringVar(&f.dir, "dir", os.TempDir(), "import: where to write the generated files")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (server and load generator) during the measurement to `file` (with 'all': file.ingest, file.import, file.track)")
	fs.BoolVar(&f.keep, "keep", false, "keep the scratch database instead of dropping it")
	if err := e.parse(fs, &f.cfg, what, args[1:]); err != nil {
		return err
	}
	if f.events <= 0 || f.batch <= 0 || f.clients <= 0 || f.rate <= 0 || f.duration <= 0 || f.users <= 0 {
		return errors.New("bench: -events, -batch, -clients, -rate, -duration and -users must be positive")
	}
	server, log, err := e.server(ctx, &f.cfg)
	if err != nil {
		return err
	}
	b := &benchRun{e: e, f: &f, server: server, log: log}
	runs := map[string]func(context.Context) (string, error){
		"ingest": b.ingest,
		"import": b.importFile,
		"track":  b.track,
	}
	var order []string
	if what == "all" {
		order = []string{"ingest", "import", "track"}
	} else if _, ok := runs[what]; ok {
		order = []string{what}
	} else {
		return fmt.Errorf("bench: unknown benchmark %q (want ingest, import, track or all)", what)
	}
	fmt.Fprintf(e.stdout, "waymark-bench %s: PostgreSQL at %s, GOMAXPROCS %d\n", what, pgserver.Redact(server), b.procs())
	var summary []string
	var failed []string
	for _, name := range order {
		b.profile = ""
		if f.cpuprofile != "" {
			b.profile = f.cpuprofile
			if what == "all" {
				b.profile += "." + name
			}
		}
		line, err := runs[name](ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bench %s: %w", name, err)
			}
			// Report it and go on with the others.
			fmt.Fprintf(e.stdout, "  FAILED: %v\n", err)
			line = fmt.Sprintf("%s: FAILED: %v", name, err)
		}
		summary = append(summary, line)
		if strings.Contains(line, "MISSED") || strings.Contains(line, "MISMATCH") || strings.Contains(line, "FAILED") {
			failed = append(failed, name)
		}
	}
	fmt.Fprintln(e.stdout, "\nsummary:")
	for _, l := range summary {
		fmt.Fprintln(e.stdout, "  "+l)
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: targets missed or counts wrong: %s", strings.Join(failed, ", "))
	}
	return nil
}

type benchRun struct {
	e       *env
	f       *benchFlags
	server  string
	log     *slog.Logger
	profile string
	stopPr  func()
}

func (b *benchRun) procs() int { return runtime.GOMAXPROCS(0) }

// startProfile starts the CPU profile, if one was asked for.
func (b *benchRun) startProfile() error {
	b.stopPr = func() {}
	if b.profile == "" {
		return nil
	}
	pf, err := os.Create(b.profile)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return err
	}
	b.stopPr = func() {
		pprof.StopCPUProfile()
		pf.Close()
		fmt.Fprintf(b.e.stdout, "  CPU profile: %s (go tool pprof -top %s)\n", b.profile, b.profile)
	}
	return nil
}

// database creates the scratch database and returns its configuration and
// a function that drops it.
func (b *benchRun) database(ctx context.Context, kind string) (*config.Config, func(), error) {
	db, err := bench.CreateDatabase(ctx, b.server, bench.DefaultName(kind))
	if err != nil {
		return nil, nil, err
	}
	// What earlier measurements left dirty is written out now, not
	// during this one (a 2M-event import's checkpoint ran into the track
	// measurement after it: p99 8 ms became 33 ms).
	if err := bench.Checkpoint(ctx, db.URL); err != nil {
		fmt.Fprintf(b.e.stdout, "  (no CHECKPOINT before measuring: %v)\n", err)
	}
	cfg := b.f.cfg
	cfg.DatabaseURL = db.URL
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WriteKey = "wk_bench_" + rand.Text()
	drop := func() {
		if b.f.keep {
			fmt.Fprintf(b.e.stdout, "  kept database %s\n", db.Name)
			return
		}
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintf(b.e.stderr, "waymark-bench: %v\n", err)
		}
	}
	return &cfg, drop, nil
}

// benchServer is the real server (internal/app), started in this
// process.
type benchServer struct {
	addr   string
	pool   *pgxpool.Pool
	app    *app.App
	cancel context.CancelFunc
	errc   chan error
}

func (b *benchRun) startServer(ctx context.Context, cfg *config.Config) (*benchServer, error) {
	pool, err := app.Connect(ctx, cfg, b.log, 0) // as serve: migrates, default pool size
	if err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	a, err := app.New(ctx, app.Config{Settings: cfg, Pool: pool, Log: b.log, Ready: func(addr string) { ready <- addr }})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &benchServer{pool: pool, app: a, cancel: cancel, errc: make(chan error, 1)}
	go func() { s.errc <- a.Run(sctx) }()
	select {
	case s.addr = <-ready:
		return s, nil
	case err := <-s.errc:
		cancel()
		pool.Close()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
}

// stop shuts the server down: once it returns, everything acknowledged is
// committed. The pool stays open for counting; close it after.
func (s *benchServer) stop() error {
	s.cancel()
	return <-s.errc
}

// againstServer runs load against a fresh server on a fresh database
// (kind names both), its events generated for f.users users from since
// ago, under the CPU profile if one was asked for, and returns the events
// stored once the server stopped.
func (b *benchRun) againstServer(ctx context.Context, kind string, since time.Duration, load func(url, writeKey string, gen *bench.Gen) error) (int64, error) {
	cfg, drop, err := b.database(ctx, kind)
	if err != nil {
		return 0, err
	}
	defer drop()
	srv, err := b.startServer(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer srv.pool.Close()
	fmt.Fprintf(b.e.stdout, "  database %s, server on http://%s\n", bench.DefaultName(kind), srv.addr)
	gen := bench.NewGen(b.f.users, time.Now().Add(-since), kind)
	if err := b.startProfile(); err != nil {
		return 0, err
	}
	err = load("http://"+srv.addr, cfg.WriteKey, gen)
	b.stopPr()
	if serr := srv.stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	return bench.CountEvents(ctx, srv.pool, "events")
}

func (b *benchRun) ingest(ctx context.Context) (string, error) {
	f, out := b.f, b.e.stdout
	fmt.Fprintf(out, "\n== ingest: %d events to /v1/batch, %d per request, %d concurrent clients, %d users\n", f.events, f.batch, f.clients, f.users)
	var res *bench.IngestResult
	stored, err := b.againstServer(ctx, "ingest", 30*24*time.Hour, func(url, writeKey string, gen *bench.Gen) (err error) {
		res, err = bench.Ingest(ctx, bench.IngestOptions{
			URL: url, WriteKey: writeKey, Gen: gen,
			Events: f.events, Batch: f.batch, Clients: f.clients, Progress: out,
		})
		return err
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  sent %d events in %d requests (%.1f MB of JSON, %.0f bytes an event); %d requests failed%s\n",
		res.Events, res.Requests, float64(res.Bytes)/1e6, float64(res.Bytes)/float64(res.Events), res.Failed, firstFailure(res.FirstFailure))
	fmt.Fprintf(out, "  elapsed %.2fs: %.0f events/s acknowledged (slowest %s window %.0f/s)\n", res.Elapsed.Seconds(), res.Rate(), "5s", res.MinWindow())
	fmt.Fprintf(out, "  latency per request: %s\n", res.Latency)
	fmt.Fprintf(out, "  CPU: %s\n", res.CPU)
	check := checkCount(out, stored, int64(res.Acked))
	verdict := verdict(res.Rate() >= targetIngestRate)
	return fmt.Sprintf("ingest: %.0f events/s over %d events (target ≥ %d): %s; p99 %s per %d-event request; %s%s",
		res.Rate(), res.Events, targetIngestRate, verdict, ms(res.Latency.P99), f.batch, check, noisy(res.CPU)), nil
}

func (b *benchRun) track(ctx context.Context) (string, error) {
	f, out := b.f, b.e.stdout
	fmt.Fprintf(out, "\n== track: single /v1/track requests at %.0f/s for %s (open loop, after %s warm-up), %d users\n", f.rate, f.duration, f.warmup, f.users)
	var res *bench.TrackResult
	stored, err := b.againstServer(ctx, "track", time.Hour, func(url, writeKey string, gen *bench.Gen) (err error) {
		res, err = bench.Track(ctx, bench.TrackOptions{
			URL: url, WriteKey: writeKey, Gen: gen,
			Rate: f.rate, Duration: f.duration, Warmup: f.warmup,
		})
		return err
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  %d requests measured in %.2fs (%.0f/s); %d sent in all, %d failed%s; the sender was at most %s late\n",
		res.Requests, res.Elapsed.Seconds(), float64(res.Requests)/res.Elapsed.Seconds(), res.Sent, res.Failed, firstFailure(res.First), ms(res.Late))
	fmt.Fprintf(out, "  latency from scheduled time: %s\n", res.Latency)
	fmt.Fprintf(out, "  latency from actual send:    %s\n", res.Service)
	fmt.Fprintf(out, "  CPU: %s\n", res.CPU)
	check := checkCount(out, stored, int64(res.Acked))
	return fmt.Sprintf("track: p99 %s at %.0f requests/s (target < %s): %s; p50 %s, max %s; %s%s",
		ms(res.Latency.P99), f.rate, ms(targetTrackP99), verdict(res.Latency.P99 < targetTrackP99 && res.Failed == 0), ms(res.Latency.P50), ms(res.Latency.Max), check, noisy(res.CPU)), nil
}

func (b *benchRun) importFile(ctx context.Context) (string, error) {
	f, out := b.f, b.e.stdout
	fmt.Fprintf(out, "\n== import: %d events with waymark import, then a bare COPY of the same rows, %d users\n", f.events, f.users)
	cfg, drop, err := b.database(ctx, "import")
	if err != nil {
		return "", err
	}
	defer drop()
	pool, err := app.Connect(ctx, cfg, b.log, 2)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	fmt.Fprintf(out, "  database %s\n", bench.DefaultName("import"))

	dir, err := os.MkdirTemp(f.dir, "waymark-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	gen := bench.NewGen(f.users, time.Now().Add(-365*24*time.Hour), "import")
	jsonl, text := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "events.copy")
	t0 := time.Now()
	jsize, err := gen.WriteJSONL(jsonl, f.events)
	if err != nil {
		return "", err
	}
	tsize, err := gen.WriteCopyText(text, f.events, time.Now())
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  generated %s (%.1f MB, %.0f bytes an event) and the equivalent COPY text %s (%.1f MB) in %.1fs\n",
		jsonl, float64(jsize)/1e6, float64(jsize)/float64(f.events), filepath.Base(text), float64(tsize)/1e6, time.Since(t0).Seconds())

	// waymark import, as the command runs it (internal/app's Import).
	args := []string{"-database-url", cfg.DatabaseURL}
	chunk, workers := 100000, 2 // waymark import's defaults
	if f.importChunk > 0 {
		args = append(args, "-chunk", fmt.Sprint(f.importChunk))
		chunk = f.importChunk
	}
	if f.importWorkers > 0 {
		args = append(args, "-workers", fmt.Sprint(f.importWorkers))
		workers = f.importWorkers
	}
	args = append(args, jsonl)
	fmt.Fprintf(out, "  waymark import %s\n", strings.Join(args[2:], " "))
	in, err := os.Open(jsonl)
	if err != nil {
		return "", err
	}
	defer in.Close()
	ipool, err := app.Connect(ctx, cfg, b.log, int32(workers)+2)
	if err != nil {
		return "", err
	}
	defer ipool.Close()
	bench.Checkpoint(ctx, cfg.DatabaseURL)
	if err := b.startProfile(); err != nil {
		return "", err
	}
	meter := bench.StartMeter()
	start := time.Now()
	imp, err := app.Import(ctx, store.New(ipool), in, app.ImportOptions{Chunk: chunk, Workers: workers, Getenv: b.e.getenv})
	if err == nil && imp.Bad > 0 {
		err = fmt.Errorf("%d lines rejected", imp.Bad)
	}
	impTime := time.Since(start)
	impCPU := meter.Stop()
	b.stopPr()
	if err != nil {
		return "", fmt.Errorf("waymark import: %w", err)
	}
	fmt.Fprintf(out, "    %s\n", imp.Summary(jsonl))
	stored, err := bench.CountEvents(ctx, pool, "events")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "    %.2fs, %.0f events/s; CPU: %s\n", impTime.Seconds(), float64(f.events)/impTime.Seconds(), impCPU)
	check := checkCount(out, stored, int64(f.events))

	// The same rows, loaded by PostgreSQL's own COPY into a bare table.
	bench.Checkpoint(ctx, cfg.DatabaseURL)
	meter = bench.StartMeter()
	rows, copyTime, err := bench.CopyBare(ctx, cfg.DatabaseURL, text)
	copyCPU := meter.Stop()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  COPY %s FROM STDIN (same columns, no index, no constraint): %d rows in %.2fs, %.0f rows/s; CPU: %s\n",
		bench.BareTable, rows, copyTime.Seconds(), float64(rows)/copyTime.Seconds(), copyCPU)
	if rows != int64(f.events) {
		check += fmt.Sprintf("; bare COPY loaded %d rows, not %d: MISMATCH", rows, f.events)
	}
	// For context: the same COPY into a table with the events table's
	// primary key and index, the floor for any loader that keeps them.
	bench.Checkpoint(ctx, cfg.DatabaseURL)
	irows, idxTime, err := bench.CopyIndexed(ctx, cfg.DatabaseURL, text)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "  for context, COPY %s (LIKE events INCLUDING ALL: same primary key and index): %d rows in %.2fs, %.2fx the bare COPY\n",
		bench.IndexedTable, irows, idxTime.Seconds(), idxTime.Seconds()/copyTime.Seconds())
	ratio := impTime.Seconds() / copyTime.Seconds()
	fmt.Fprintf(out, "  waymark import took %.2fx the bare COPY (%.2fx the indexed COPY)\n", ratio, impTime.Seconds()/idxTime.Seconds())
	return fmt.Sprintf("import: %.2fs for %d events vs bare COPY %.2fs: %.2fx (target ≤ %.0fx): %s; indexed COPY %.2fx; %s%s%s",
		impTime.Seconds(), f.events, copyTime.Seconds(), ratio, targetImportRatio, verdict(ratio <= targetImportRatio), idxTime.Seconds()/copyTime.Seconds(), check, noisy(impCPU), noisy(copyCPU)), nil
}

func checkCount(out io.Writer, stored, acked int64) string {
	if stored == acked {
		fmt.Fprintf(out, "  events table holds %d rows = %d events acknowledged: OK\n", stored, acked)
		return fmt.Sprintf("stored %d = acknowledged %d", stored, acked)
	}
	fmt.Fprintf(out, "  events table holds %d rows but %d events were acknowledged: MISMATCH\n", stored, acked)
	return fmt.Sprintf("stored %d ≠ acknowledged %d: MISMATCH", stored, acked)
}

// noisy flags figures measured while other processes competed for the CPU.
func noisy(u bench.CPUUse) string {
	if u.Other() > 0.15 {
		return fmt.Sprintf(" [NOISY: other processes used %.2f cores]", u.Other())
	}
	return ""
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func firstFailure(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
