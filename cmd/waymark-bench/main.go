// Command waymark-bench measures Waymark as its users run it: the real
// `waymark` binary, started as a user would start it, against a real
// PostgreSQL and Postfix's smtp-sink, with PostgreSQL's own time for the
// same work measured in the same run.
//
//	go run ./cmd/waymark-bench path [-sizes 10000,100000,1000000]
//	go run ./cmd/waymark-bench quickstart [-contacts 100000]
//
// path: the whole path a new user takes — import a list with its
// history, apply the journey, the first tick, send what it queued, a
// second tick a day later — at several sizes, each phase's time per
// contact (so a superlinear step shows), its CPU (waymark's and
// PostgreSQL's) and peak memory. quickstart: from an empty database to
// the last email accepted (import contacts, a welcome sequence, one
// tick), the path listmonk's users compare.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "waymark-bench:", err)
		os.Exit(1)
	}
}

const usage = `usage: waymark-bench path|quickstart [flags]

  path        the whole path at several sizes: import (JSON lines and CSV),
              apply, first tick, sending (default pool and 64 connections),
              a second tick a day later
  quickstart  from an empty database to the last email accepted: import
              contacts, a welcome sequence, one tick

Run 'waymark-bench path -h' for the flags.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("name a benchmark: path or quickstart")
	}
	switch args[0] {
	case "path":
		return cmdPath(ctx, args[1:], getenv, stdout, stderr)
	case "quickstart":
		return cmdQuickstart(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown benchmark %q (want path or quickstart)", args[0])
}
