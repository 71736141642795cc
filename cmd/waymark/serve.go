package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/bounce"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/scheduler"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/lifecycle"
)

func cmdServe(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("serve", &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	if cfg.WriteKey == "" {
		return &config.Error{Var: "WAYMARK_WRITE_KEY", Msg: "missing: serve needs a write key for the ingestion API"}
	}
	log := e.logger()
	pool, err := connect(ctx, &cfg, log, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	if advice := pgserver.SettingsAdvice(ctx, pool); advice != "" {
		log.Warn(advice)
	}
	return serve(ctx, &cfg, pool, log, nil)
}

// server is a running Waymark: the HTTP APIs and the background workers.
type server struct {
	cfg    *config.Config
	pool   *pgxpool.Pool
	store  *store.Store
	writer *ingest.Writer
	log    *slog.Logger
	http   *http.Server
	engine *lifecycle.Engine
	runner *campaigns.Runner
	sender *campaigns.Sender // nil without SMTP
	sched  *scheduler.Scheduler
}

// latestEvents converts each touched contact's newest event for rules.
func latestEvents(res ingest.Result) map[int64]*lifecycle.Event {
	out := make(map[int64]*lifecycle.Event, len(res.Latest))
	for id, m := range res.Latest {
		// Properties are decoded only if a rule reads the event.
		out[id] = lifecycle.EventJSON(m.Name, m.Timestamp, m.Properties)
	}
	return out
}

// serveOptions extend serve.
type serveOptions struct {
	// Ready, if set, receives the address serve listens on.
	Ready func(addr string)
	// Routes add handlers to the server's mux (the dashboard, the demo's
	// captured mail), with the running server's parts at hand.
	Routes []func(mux *http.ServeMux, s *server)
	// Mail, if set, lists captured emails for the dashboard (demo mode).
	Mail func(ctx context.Context) ([]web.Mail, error)
	// Now, if set, is the clock of rules, campaigns, the scheduler, the
	// sender and ingestion (the demo's accelerated clock); nil: time.Now.
	Now func() time.Time
	// NoSender: the caller sends (the demo runs its own sender in step
	// with its clock); serve starts none and does not warn.
	NoSender bool
	// Reactor, if set, is given the reactor (a benchmark waits for it to
	// finish evaluating what was ingested).
	Reactor func(*lifecycle.Reactor)
	// SNS, if set, verifies the SES webhook's SNS signatures (tests give
	// one that fetches certificates from a local server).
	SNS *bounce.SNSVerifier
}

// serve runs until ctx is done. ready, if set, receives the address it
// listens on.
func serve(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger, ready func(addr string)) error {
	return serveWith(ctx, cfg, pool, log, serveOptions{Ready: ready})
}

// serveWith is serve with options.
func serveWith(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger, opts serveOptions) error {
	ready := opts.Ready
	s := &server{cfg: cfg, pool: pool, store: store.New(pool), log: log}
	now := opts.Now
	if now == nil {
		now = clock.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var workers sync.WaitGroup
	defer workers.Wait()
	defer cancel()

	// Rules run at once for contacts that events touch, and on the
	// schedule for everyone (windows slide, days_since grows).
	engine := lifecycle.NewEngine(s.store, log)
	runner := campaigns.NewRunner(s.store, log)
	engine.Hook = runner
	sender, err := newSender(cfg, s.store, runner, log, now)
	if opts.NoSender {
		sender = nil
	}
	if err != nil {
		return err
	}
	s.engine, s.runner, s.sender = engine, runner, sender
	reactor := lifecycle.NewReactor(engine, log, now)
	if opts.Reactor != nil {
		opts.Reactor(reactor)
	}
	sched, err := scheduler.New(cfg.CronSpec, s.store, func(ctx context.Context, at time.Time) error {
		st, err := engine.Sweep(ctx, at)
		if err == nil && st.Contacts > 0 {
			log.Info("sweep", "contacts", st.Contacts, "moved", st.Moved, "took", st.Elapsed.Round(time.Millisecond))
		}
		if sender != nil {
			sender.Wake()
		}
		return err
	}, log, now)
	if err != nil {
		return &config.Error{Var: "WAYMARK_CRON", Msg: err.Error()}
	}
	s.sched = sched
	workers.Add(2)
	go func() { defer workers.Done(); reactor.Run(ctx) }()
	go func() { defer workers.Done(); sched.Run(ctx) }()
	if sender != nil {
		// Sends that became due now go out at once: here directly, and on
		// the other instances through NOTIFY.
		notify := make(chan struct{}, 1)
		runner.Wake = func() {
			sender.Wake()
			select {
			case notify <- struct{}{}:
			default:
			}
		}
		workers.Add(3)
		go func() { defer workers.Done(); sender.Run(ctx, 5*time.Second) }()
		go func() { defer workers.Done(); store.Listen(ctx, pool, store.SendsChannel, sender.Wake, log) }()
		go func() {
			defer workers.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-notify:
					if err := s.store.Notify(ctx, store.SendsChannel); err != nil && ctx.Err() == nil {
						log.Warn("notifying other instances", "err", err)
					}
				}
			}
		}()
	} else if !opts.NoSender {
		log.Warn("no SMTP server configured (WAYMARK_SMTP_URL): emails are queued but not sent")
	}

	s.writer = ingest.NewWriter(s.store, log, ingest.WriterOptions{
		OnStored: func(_ context.Context, res ingest.Result) { reactor.Touch(res.Contacts, latestEvents(res), res.Names) },
	})
	defer s.writer.Close()

	mux := http.NewServeMux()
	mux.Handle("/v1/", ingest.NewHandler(cfg.WriteKey, s.writer, log, now))
	// Unsubscribe, preferences, open and click links; suppressions and the bounce webhook.
	track, err := trackingHandler(ctx, cfg, s.store, reactor, log, now)
	if err != nil {
		return err
	}
	for _, p := range track.Patterns() {
		mux.Handle(p, track)
	}
	if err := mountWebhooks(mux, cfg, s.store, track, reactor, log, now, opts.SNS); err != nil {
		return err
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mountWeb(ctx, mux, s, opts, &workers)
	for _, add := range opts.Routes {
		add(mux, s)
	}
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return &config.Error{Var: "WAYMARK_HTTP_ADDR", Msg: err.Error()}
	}
	log.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.http.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
