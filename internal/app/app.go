// Package app is Waymark assembled: the lifecycle engine with the
// campaigns runner as its hook, the sender, the reactor that evaluates
// contacts as events arrive, the scheduler, ingestion, tracking links, the
// management API and the dashboard, on one database. `waymark serve`,
// `waymark tick`, `waymark demo` and the benchmarks all start Waymark
// here.
//
//	a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: log})
//	...
//	err = a.Run(ctx) // until ctx is done
package app

import (
	"context"
	"errors"
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
	"github.com/waymark/waymark/internal/scheduler"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/web"
	"github.com/waymark/waymark/lifecycle"
)

// Config is what an App is built from.
type Config struct {
	// Settings are Waymark's settings (flags and environment).
	Settings *config.Config
	// Pool is the database, connected and migrated (see Connect).
	Pool *pgxpool.Pool
	Log  *slog.Logger
	// Now is the clock of rules, campaigns, the scheduler, the sender and
	// ingestion (the demo's accelerated clock, a backtest's instant); nil:
	// the wall clock.
	Now func() time.Time
	// Mail, if set, lists captured emails for the dashboard (demo mode).
	Mail func(ctx context.Context) ([]web.Mail, error)
	// CallerSends: the caller drives the sender (the demo sends in step
	// with its clock): Run starts no sender, nothing wakes it, and no
	// warning says that none is configured.
	CallerSends bool
	// Ready, if set, receives the address Run listens on.
	Ready func(addr string)
	// SNS, if set, verifies the SES webhook's SNS signatures (tests give
	// one that fetches certificates from a local server).
	SNS *bounce.SNSVerifier
	// Getenv reads the webhooks' secrets (the variables the journey's
	// webhooks name); nil: os.Getenv.
	Getenv func(string) string
}

// App is Waymark on one database. New builds it; Run serves it.
type App struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	engine  *lifecycle.Engine
	runner  *campaigns.Runner
	sender  *campaigns.Sender // nil without SMTP
	reactor *lifecycle.Reactor
	sched   *scheduler.Scheduler
	bcast   *campaigns.Broadcaster
	// notify asks the NOTIFY loop to tell the other instances that sends
	// became due.
	notify chan struct{}
}

// New builds Waymark from cfg without starting anything: rules run at
// once for contacts that events touch (the reactor), and on the schedule
// for everyone (windows slide, days_since grows); the campaigns runner
// sees every evaluated batch; the sender sends what falls due.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	a := &App{cfg: cfg, log: cfg.Log, store: store.New(cfg.Pool), notify: make(chan struct{}, 1)}
	a.runner = campaigns.NewRunner(a.store, a.log, campaigns.WithWake(a.sendsDue))
	a.engine = lifecycle.NewEngine(a.store, a.log, lifecycle.WithHook(a.runner))
	sender, err := newSender(ctx, cfg.Settings, a.store, a.runner, a.log, cfg.Now)
	if err != nil {
		return nil, err
	}
	a.sender = sender
	a.reactor = lifecycle.NewReactor(a.engine, a.log, cfg.Now)
	a.bcast = campaigns.NewBroadcaster(a.store, a.engine, a.log)
	a.bcast.Wake = a.sendsDue
	a.sched, err = scheduler.New(cfg.Settings.CronSpec, a.store, a.scheduledPass, a.log, cfg.Now)
	if err != nil {
		return nil, &config.Error{Var: "WAYMARK_CRON", Msg: err.Error()}
	}
	return a, nil
}

// scheduledPass is the scheduler's work: a sweep of every contact, the
// conversions since the last pass attributed (before the broadcasts, so
// that an A/B test decided by conversions counts them), then a look for
// what became due.
func (a *App) scheduledPass(ctx context.Context, at time.Time) error {
	st, err := a.engine.Sweep(ctx, at)
	if err == nil && st.Contacts > 0 {
		a.log.Info("sweep", "contacts", st.Contacts, "moved", st.Moved, "took", st.Elapsed.Round(time.Millisecond))
	}
	if _, aerr := a.Attribute(ctx, at); aerr != nil && err == nil {
		err = aerr
	}
	if _, berr := a.bcast.Tick(ctx, at); berr != nil && err == nil {
		err = berr
	}
	if a.runsSender() {
		a.sender.Wake()
	}
	return err
}

// runsSender reports whether Run sends (a sender is configured and the
// caller does not drive it).
func (a *App) runsSender() bool { return a.sender != nil && !a.cfg.CallerSends }

// sendsDue is the runner's word that sends became due at once: they go
// out now, here directly, and on the other instances through NOTIFY.
func (a *App) sendsDue() {
	if !a.runsSender() {
		return
	}
	a.sender.Wake()
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Sweep evaluates every contact at asOf and applies the moves, with the
// campaigns runner as the engine's hook (a tick, a backtest).
func (a *App) Sweep(ctx context.Context, asOf time.Time) (lifecycle.SweepStats, error) {
	return a.engine.Sweep(ctx, asOf)
}

// Attribute credits the conversions stored since the last pass (a
// scheduled pass's, after its sweep) and logs how many it credited.
func (a *App) Attribute(ctx context.Context, at time.Time) (int64, error) {
	start := time.Now()
	n, err := a.store.AttributeConversions(ctx, at)
	if err == nil && n > 0 {
		a.log.Info("conversions attributed", "conversions", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return n, err
}

// Broadcasts does a scheduled pass's broadcast work at at: the runs whose
// time came start, their audiences are queued, A/B tests due are decided
// (a tick, after its sweep).
func (a *App) Broadcasts(ctx context.Context, at time.Time) (campaigns.BroadcastStats, error) {
	return a.bcast.Tick(ctx, at)
}

// Tick runs one scheduled pass now, unless another instance holds the
// scheduler's lease (false).
func (a *App) Tick(ctx context.Context) bool { return a.sched.Tick(ctx) }

// Sender is the sender (nil when no SMTP server is configured). With
// Config.CallerSends the caller runs it.
func (a *App) Sender() *campaigns.Sender { return a.sender }

// Idle reports whether every contact touched by events so far has been
// evaluated, its moves applied and its campaigns run.
func (a *App) Idle() bool { return a.reactor.Idle() }

// Close lets go of what the app holds once nothing runs: the sender's
// presence.
func (a *App) Close() { a.sender.Close() }

// Run serves until ctx is done: the ingestion API, tracking links, the
// management API and the dashboard on Settings.HTTPAddr, and the reactor,
// the scheduler and the sender in the background. Once it returns,
// everything acknowledged is committed.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var workers sync.WaitGroup
	defer workers.Wait()
	defer cancel()

	workers.Add(3)
	go func() { defer workers.Done(); a.reactor.Run(ctx) }()
	go func() { defer workers.Done(); a.sched.Run(ctx) }()
	go func() { defer workers.Done(); a.webhooks().Run(ctx, time.Second) }()
	if a.runsSender() {
		workers.Add(3)
		go func() { defer workers.Done(); a.sender.Run(ctx, 5*time.Second) }()
		go func() {
			defer workers.Done()
			store.Listen(ctx, a.cfg.Pool, store.SendsChannel, a.sender.Wake, a.log)
		}()
		go func() { defer workers.Done(); a.notifyLoop(ctx) }()
	} else if !a.cfg.CallerSends {
		a.log.Warn("no SMTP server configured (WAYMARK_SMTP_URL): emails are queued but not sent")
	}

	h, closeWriter, err := a.handler(ctx, &workers)
	if err != nil {
		return err
	}
	defer closeWriter()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", a.cfg.Settings.HTTPAddr)
	if err != nil {
		return &config.Error{Var: "WAYMARK_HTTP_ADDR", Msg: err.Error()}
	}
	a.log.Info("listening", "addr", ln.Addr().String())
	if a.cfg.Ready != nil {
		a.cfg.Ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// notifyLoop tells the other instances, through NOTIFY, that sends became
// due, once per wake-up however many came meanwhile.
func (a *App) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.notify:
			if err := a.store.Notify(ctx, store.SendsChannel); err != nil && ctx.Err() == nil {
				a.log.Warn("notifying other instances", "err", err)
			}
		}
	}
}
