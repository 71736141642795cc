// Command waymark is the lifecycle email engine: one binary that serves the
// ingestion and management APIs, runs the scheduler and the sender, loads
// journeys and imports history.
//
// The dispatcher is written here rather than taken from a library such as
// spf13/cobra: commands keep Go's flag syntax (-database-url, as the
// README and the benchmarks use it), and what the conventions need —
// per-command help with only its own flags, suggestions for a mistyped
// command, a version — is a few functions over the command table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/waymark/waymark/internal/suggest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "waymark:", err)
		os.Exit(1)
	}
}

type command struct {
	name, args, summary string
	// subs are the subcommands, when the command has some.
	subs []string
	run  func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: where to read and write, and the
// environment.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// help: the command line asks for help (-h), which goes to stdout.
	help bool
}

func commands() []command {
	return []command{
		{"demo", "[--contacts N] [--days N] [--exit]", "everything on defaults: database, migrations, the example journey, simulated contacts, captured mail, the dashboard", nil, cmdDemo},
		{"serve", "", "the ingestion and management API, the dashboard, the scheduler and the sender, until stopped", nil, cmdServe},
		{"migrate", "", "apply database migrations", nil, cmdMigrate},
		{"import", "FILE", "bulk-load contacts and events (Segment-shaped JSON lines, or CSV); exits non-zero if a line was rejected", nil, cmdImport},
		{"apply", "-f FILE [--dry-run]", "check and load a journey; with --dry-run change nothing and show what it would do", nil, cmdApply},
		{"tick", "[--as-of TIME]", "one scheduler pass, then exit; --as-of backtests at a past instant", nil, cmdTick},
		{"stages", "[--json]", "how many contacts are in each stage", nil, cmdStages},
		{"export", "[--stage S] [--format csv|jsonl] [-o FILE]", "stream contacts (id, user id, email, stage, since, status, traits) as CSV or JSON lines", nil, cmdExport},
		{"report", "[--from DATE] [--to DATE] [--by DIM] [--json]", "what emails did and earned: sent, delivered, bounces, complaints, human opens and clicks, unsubscribes, conversions and revenue, by template, step, sequence, broadcast, variant, tone, stage or offer", nil, cmdReport},
		{"history", "CONTACT", "a contact's stage moves, with the rule and the values it saw", nil, cmdHistory},
		{"preview", "TEMPLATE --contact ID [--tone T]", "render a template for a contact: the tone chosen, why, subject, text and HTML", nil, cmdPreview},
		{"list", "rules|templates|tones|sequences|offers [--json]", "what the applied journey holds", []string{"rules", "templates", "tones", "sequences", "offers"}, cmdList},
		{"sequences", "list | pause NAME | resume NAME", "pause a sequence (it enrols nobody; its queued emails wait, none dropped) and resume it", []string{"list", "pause", "resume"}, cmdSequences},
		{"broadcast", "list | status NAME [--dry-run] | pause NAME | resume NAME | cancel NAME [--reason R] | test NAME --to EMAIL | preview NAME", "follow and steer broadcasts: progress, pause, resume, cancel, a test email to seed addresses, who it would reach now", []string{"list", "status", "pause", "resume", "cancel", "test", "preview"}, cmdBroadcast},
		{"suppressions", "list | add EMAIL [--detail TEXT] | remove EMAIL", "addresses never mailed: list them, add one by hand, remove one added by hand", []string{"list", "add", "remove"}, cmdSuppressions},
		{"contacts", "erase|export CONTACT", "erase a contact's personal data (keeping a hashed suppression), or export everything stored about it as JSON", []string{"erase", "export"}, cmdContacts},
		{"keys", "create --name NAME | list | revoke KEY", "management API keys: create (printed once, stored hashed), list, revoke", []string{"create", "list", "revoke"}, cmdKeys},
		{"version", "", "the version and build of this waymark", nil, func(_ context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("version: unexpected argument %q", args[0])
			}
			fmt.Fprintln(e.stdout, buildVersion())
			return nil
		}},
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// run is the whole program, callable from tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" && len(args) == 1 || isHelp(args[0]) {
		usage(stdout)
		return nil
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	if args[0] == "help" {
		// waymark help COMMAND is waymark COMMAND -h.
		args = []string{args[1], "-h"}
	}
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		names := make([]string, len(cmds))
		for j, c := range cmds {
			names[j] = c.name
		}
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := suggest.Closest(args[0], names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return errors.New(msg + " (waymark help lists the commands)")
	}
	c := cmds[i]
	rest := args[1:]
	for _, a := range rest {
		if a == "--" {
			break
		}
		e.help = e.help || isHelp(a)
	}
	if c.subs != nil {
		switch {
		case len(rest) == 0 || isHelp(rest[0]):
			commandHelp(e.out(), c.name)
			if len(rest) == 0 {
				return fmt.Errorf("%s: name one of: %s", c.name, strings.Join(c.subs, ", "))
			}
			return nil
		case !slices.Contains(c.subs, rest[0]):
			msg := fmt.Sprintf("%s: unknown subcommand %q (one of: %s)", c.name, rest[0], strings.Join(c.subs, ", "))
			if s := suggest.Closest(rest[0], c.subs); s != "" {
				msg = fmt.Sprintf("%s: unknown subcommand %q; did you mean %q?", c.name, rest[0], s)
			}
			return errors.New(msg)
		}
	}
	err := c.run(ctx, e, rest)
	if errors.Is(err, flag.ErrHelp) {
		// -h: the command's help was printed.
		return nil
	}
	return err
}

// out is where help goes: stdout when asked for, stderr when it comes with
// an error.
func (e *env) out() io.Writer {
	if e.help {
		return e.stdout
	}
	return e.stderr
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: waymark COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'waymark COMMAND -h' (or 'waymark help COMMAND') for a command's arguments and flags. Settings come from flags or the environment (DATABASE_URL, WAYMARK_*).")
}

// commandHelp prints a command's usage line and purpose; its flags follow
// (see env.flags). name may name a subcommand ("keys create").
func commandHelp(w io.Writer, name string) {
	top, _, _ := strings.Cut(name, " ")
	for _, c := range commands() {
		if c.name == top {
			fmt.Fprintf(w, "usage: waymark %s %s\n\n%s\n", c.name, c.args, c.summary)
			return
		}
	}
	fmt.Fprintf(w, "usage: waymark %s\n", name)
}

// buildVersion is the version and build: the module version, the commit and
// its time, whether the tree was modified, the Go version and platform.
func buildVersion() string {
	v, rev, at, modified := "(devel)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var build []string
	if rev != "" {
		c := "commit " + rev[:min(12, len(rev))]
		if modified {
			c += " (modified)"
		}
		build = append(build, c)
	}
	if at != "" {
		build = append(build, at)
	}
	build = append(build, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("waymark %s (%s)", v, strings.Join(build, ", "))
}
