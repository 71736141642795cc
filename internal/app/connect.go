package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/migrations"
)

// Connect finds the database (starting a private server when allowed and
// nothing answers), opens a pool of at most maxConns connections (0: pgx's
// default) and applies migrations.
func Connect(ctx context.Context, cfg *config.Config, log *slog.Logger, maxConns int32) (*pgxpool.Pool, error) {
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
	sessionSettings(pcfg)
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

// sessionSettings are the settings of every Waymark session. JIT
// compilation is off: Waymark's statements read a few rows per contact,
// but one over a batch of contacts is costed as if it read them all, far
// above jit_above_cost, and compiling took longer than running it (the
// enrolments' goal values for 1,000 sends: 247 ms with JIT, most of it
// compiling; the facts query: about half a second of CPU a batch).
func sessionSettings(pcfg *pgxpool.Config) {
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, set := pcfg.ConnConfig.RuntimeParams["jit"]; !set {
		pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
}

// DescribeDB names a database: `database "waymark" on 127.0.0.1:5432`.
func DescribeDB(c *pgx.ConnConfig) string {
	return fmt.Sprintf("database %q on %s:%d", c.Database, c.Host, c.Port)
}

// ConnectExisting connects to the configured database without creating
// it, starting a server or migrating it: for commands that promise to
// change nothing (apply --dry-run). A missing database, or one whose
// schema is older than this waymark, is an error saying so.
func ConnectExisting(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	u := cfg.DatabaseURL
	if u == "" {
		u = pgserver.DefaultURL
	}
	pcfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, &config.Error{Var: "DATABASE_URL", Msg: err.Error()}
	}
	pcfg.MaxConns = 4
	sessionSettings(pcfg)
	where := DescribeDB(pcfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
			return nil, fmt.Errorf("%s does not exist, and this command creates nothing (waymark migrate creates it)", where)
		}
		return nil, fmt.Errorf("connecting to %s: %w (this command starts and creates nothing; set DATABASE_URL)", where, err)
	}
	pending, err := migrations.Pending(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if len(pending) > 0 {
		pool.Close()
		return nil, fmt.Errorf("%s lacks %d of this waymark's migrations (from %03d_%s), and this command changes nothing: run waymark migrate first", where, len(pending), pending[0].Version, pending[0].Name)
	}
	return pool, nil
}
