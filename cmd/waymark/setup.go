package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/store"
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

// openStore loads cfg from the environment and connects with two
// connections (migrations applied): what the short administrative commands
// share. The returned func closes the pool.
func openStore(ctx context.Context, e *env, cfg *config.Config) (*store.Store, func(), error) {
	if err := cfg.Load(e.getenv); err != nil {
		return nil, nil, err
	}
	pool, err := app.Connect(ctx, cfg, e.logger(), 2)
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
	fmt.Fprintf(e.stderr, "waymark: %s\n", app.DescribeDB(pool.Config().ConnConfig))
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
