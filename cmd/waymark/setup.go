package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/migrations"
)

// flags returns a flag set with the configuration's flags registered.
func (e *env) flags(name string, cfg *config.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("waymark "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg.Register(fs)
	return fs
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// connect finds the database (starting a private server when allowed and
// nothing answers), opens a pool and applies migrations.
func connect(ctx context.Context, cfg *config.Config, log *slog.Logger, maxConns int32) (*pgxpool.Pool, error) {
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = pgserver.DefaultDataDir()
	}
	u, err := pgserver.Resolve(ctx, cfg.DatabaseURL, dataDir, log)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, &config.Error{Var: "DATABASE_URL", Msg: err.Error()}
	}
	if maxConns > 0 {
		pcfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", pcfg.ConnConfig.Host, err)
	}
	ran, err := migrations.Apply(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if len(ran) > 0 {
		log.Info("applied migrations", "versions", ran)
	}
	return pool, nil
}

// openStore loads cfg from the environment and connects with two
// connections (migrations applied): what the short administrative commands
// share. The returned func closes the pool.
func openStore(ctx context.Context, e *env, cfg *config.Config) (*store.Store, func(), error) {
	if err := cfg.Load(e.getenv); err != nil {
		return nil, nil, err
	}
	pool, err := connect(ctx, cfg, e.logger(), 2)
	if err != nil {
		return nil, nil, err
	}
	return store.New(pool), pool.Close, nil
}

// contactRef resolves a contact named on the command line (id, userId,
// anonymousId or email); cmd names the command in the error.
func contactRef(ctx context.Context, st *store.Store, cmd, ref string) (int64, error) {
	id, err := st.ContactRef(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("%s: no contact %q", cmd, ref)
	}
	return id, err
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("migrate", &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	done()
	fmt.Fprintln(e.stdout, "database is up to date")
	return nil
}
