// Command waymark is the lifecycle email engine: one binary that serves the
// ingestion and management APIs, runs the scheduler and the sender, loads
// journeys and imports history.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "waymark:", err)
		}
		os.Exit(1)
	}
}

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: where to read and write, and the
// environment.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func commands() []command {
	return []command{
		{"demo", "", "everything on defaults: database, migrations, the example journey, simulated contacts, captured mail, the dashboard", cmdDemo},
		{"serve", "", "the ingestion and management API, the dashboard, the scheduler and the sender", cmdServe},
		{"migrate", "", "apply database migrations", cmdMigrate},
		{"import", "FILE", "bulk-load contacts and events (Segment-shaped JSON lines, or CSV)", cmdImport},
		{"apply", "-f FILE [--dry-run]", "validate and load a journey; with --dry-run change nothing and show what it would do", cmdApply},
		{"tick", "[--as-of TIME]", "one scheduler pass, then exit; --as-of backtests at a past instant", cmdTick},
		{"stages", "[--json]", "how many contacts are in each stage", cmdStages},
		{"preview", "TEMPLATE --contact ID", "render a template for a contact: the tone chosen, why, subject, text and HTML", cmdPreview},
		{"bench", "ingest|import|track|sweep|send|dashboard|all", "measure: ingestion, import, single-call latency, the lifecycle sweep, sending, dashboard pages", func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 && args[0] == "sweep" {
				return cmdBenchSweep(ctx, e, args[1:])
			}
			if len(args) > 0 && args[0] == "send" {
				return cmdBenchSend(ctx, e, args[1:])
			}
			if len(args) > 0 && args[0] == "dashboard" {
				return cmdBenchDashboard(ctx, e, args[1:])
			}
			return cmdBench(ctx, e, args)
		}},
		{"contacts", "erase|export CONTACT", "erase a contact's personal data (keeping a hashed suppression), or export everything stored about it as JSON", cmdContacts},
		{"history", "CONTACT", "a contact's stage moves, with the rule and the values it saw", cmdHistory},
		{"keys", "create|list|revoke", "management API keys: create --name NAME (printed once, stored hashed), list, revoke", cmdKeys},
	}
}

// run is the whole program, callable from tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: waymark COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %-22s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'waymark COMMAND -h' for a command's flags. Settings come from flags or the environment (DATABASE_URL, WAYMARK_*).")
}
