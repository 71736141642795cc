package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/migrations"
)

// parse parses args with fs, flags before or after the positional
// arguments ("add ann@example.com --detail x"), which it returns. "--"
// ends the flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		dash := slices.Index(args, "--")
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if dash >= 0 && len(rest) == len(args)-dash-1 {
			return append(pos, rest...), nil // stopped at "--"
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// Settings the commands take as flags (the environment is read for all).
var (
	databaseFlags = []string{"database-url", "data-dir"}
	sendingFlags  = append(slices.Clone(databaseFlags), "smtp-url", "from", "secret", "public-url", "postal-address", "dkim-domain", "dkim-selector", "dkim-key-file")
)

// flags returns the flag set of command name ("stages", "keys create")
// with the configuration's flags registered: only those named, when any
// are. Its -h prints the command's usage, purpose and flags.
func (e *env) flags(name string, cfg *config.Config, only ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("waymark "+name, flag.ContinueOnError)
	fs.SetOutput(e.out())
	cfg.Register(fs, only...)
	fs.Usage = func() {
		w := fs.Output()
		commandHelp(w, name)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
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
	e.announce(pool)
	return store.New(pool), pool.Close, nil
}

// announce says on stderr which database the command reads, so that a
// command reading the default database is not mistaken for one reading
// the demo's.
func (e *env) announce(pool *pgxpool.Pool) {
	fmt.Fprintf(e.stderr, "waymark: %s\n", describeDB(pool.Config().ConnConfig))
}

// describeDB names a database: `database "waymark" on 127.0.0.1:5432`.
func describeDB(c *pgx.ConnConfig) string {
	return fmt.Sprintf("database %q on %s:%d", c.Database, c.Host, c.Port)
}

// connectExisting connects to the configured database without creating
// it, starting a server or migrating it: for commands that promise to
// change nothing (apply --dry-run). A missing database, or one whose
// schema is older than this waymark, is an error saying so.
func connectExisting(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
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
	where := describeDB(pcfg.ConnConfig)
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
	fs := e.flags("migrate", &cfg, databaseFlags...)
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
