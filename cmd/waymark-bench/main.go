// Command waymark-bench measures Waymark: the whole path a new user takes,
// with the real `waymark` binary started as a user would start it, and
// each part (ingestion, import, single calls, the lifecycle sweep,
// sending, dashboard pages) over the same application (internal/app),
// against a real PostgreSQL and Postfix's smtp-sink, with PostgreSQL's own
// time for the same work measured in the same run.
//
//	go run ./cmd/waymark-bench path [-sizes 10000,100000,1000000]
//	go run ./cmd/waymark-bench quickstart [-contacts 100000]
//	go run ./cmd/waymark-bench ingest|import|track|all [flags]
//	go run ./cmd/waymark-bench sweep [-contacts 1000000 -events 20000000 -keep]
//	go run ./cmd/waymark-bench send [-emails 20000 -connections 8,64 -body short|newsletter]
//	go run ./cmd/waymark-bench dashboard [-copy-from waymark_bench_sweep -keep]
//	go run ./cmd/waymark-bench broadcast [-sizes 100000,300000,1000000 -keep] [-send 200000]
//	go run ./cmd/waymark-bench webhooks [-contacts 1000000 -rounds 2 -deliver 100000]
//
// path: the whole path a new user takes — import a list with its
// history, apply the journey, the first tick, send what it queued, a
// second tick a day later — at several sizes, each phase's time per
// contact (so a superlinear step shows), its CPU (waymark's and
// PostgreSQL's) and peak memory. quickstart: from an empty database to
// the last email accepted (import contacts, a welcome sequence, one
// tick), the path listmonk's users compare. Each other subcommand prints
// its figures beside its targets; 'waymark-bench NAME -h' lists its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "waymark-bench:", err)
		os.Exit(1)
	}
}

const usage = `usage: waymark-bench BENCHMARK [flags]

  path        the whole path at several sizes: import (JSON lines and CSV),
              apply, first tick, sending (default pool and 64 connections),
              a second tick a day later
  quickstart  from an empty database to the last email accepted: import
              contacts, a welcome sequence, one tick
  ingest      /v1/batch ingestion through the whole server
  import      waymark import against PostgreSQL's COPY of the same rows
  track       single /v1/track requests at a steady rate (latency)
  all         ingest, import and track, one after another
  sweep       the lifecycle sweep and dry run on a large database
              (-ingest N: ingestion with and without rules)
  send        sending into smtp-sink, against smtp-source and a bare
              go-mail loop (-mode serve, latency: through waymark serve)
  dashboard   every dashboard page and API endpoint on a large database
  broadcast   a broadcast's audience (stages + a segment) at several sizes,
              and (-send N) sending a broadcast against a sequence
  webhooks    a sweep moving every contact with and without an endpoint
              wanting stage_changed, and the deliveries a second

Run 'waymark-bench BENCHMARK -h' for its flags.`

// benchmarks are the subcommands.
var benchmarks = map[string]func(ctx context.Context, e *env, args []string) error{
	"path":       cmdPath,
	"quickstart": cmdQuickstart,
	"ingest":     cmdBench,
	"import":     cmdBench,
	"track":      cmdBench,
	"all":        cmdBench,
	"sweep":      cmdBenchSweep,
	"send":       cmdBenchSend,
	"dashboard":  cmdBenchDashboard,
	"broadcast":  cmdBenchBroadcast,
	"webhooks":   cmdBenchWebhooks,
}

// env is what every benchmark gets: the environment, and where to write.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// flags returns the flag set of benchmark name with Waymark's settings
// (database, SMTP…) registered in cfg; call cfg.Load after parsing.
func (e *env) flags(name string, cfg *config.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("waymark-bench "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfg.Register(fs)
	return fs
}

// parse parses a benchmark's args with fs, refuses positional arguments,
// and loads cfg from the environment.
func (e *env) parse(fs *flag.FlagSet, cfg *config.Config, name string, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench %s: unexpected argument %q", name, fs.Arg(0))
	}
	return cfg.Load(e.getenv)
}

// server finds the PostgreSQL server cfg names (starting a private one
// when allowed and nothing answers), and returns it with the log the
// benchmark's servers write to: only warnings and errors, so that the
// figures stay readable.
func (e *env) server(ctx context.Context, cfg *config.Config) (string, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = pgserver.DefaultDataDir()
	}
	server, err := pgserver.Resolve(ctx, cfg.DatabaseURL, dataDir, log)
	return server, log, err
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("name a benchmark")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	b, ok := benchmarks[args[0]]
	if !ok {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown benchmark %q", args[0])
	}
	rest := args[1:]
	if b2 := args[0]; b2 == "ingest" || b2 == "import" || b2 == "track" || b2 == "all" {
		rest = args // cmdBench takes which to run
	}
	err := b(ctx, &env{getenv: getenv, stdout: stdout, stderr: stderr}, rest)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
