package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/demo"
)

// demoOptions are the demo's own settings (the rest is config.Config).
type demoOptions = demo.RunOptions

// demoRun is what a finished demo leaves behind, for tests.
type demoRun = demo.Result

func cmdDemo(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("demo", &cfg)
	o := demoOptions{}
	fs.IntVar(&o.Contacts, "contacts", 1000, "how many customers to simulate")
	days := fs.Int("days", 200, "days of history to simulate before now (at least 150: lapsed customers need 120 quiet days)")
	fs.DurationVar(&o.Duration, "duration", 40*time.Second, "wall-clock time to play the history in (longer if the machine cannot keep up)")
	fs.Uint64Var(&o.Seed, "seed", 1, "the population's random seed (the same seed, the same customers)")
	fs.StringVar(&o.Journey, "journey", "", "journey file to apply (default: the embedded examples/journey.yaml)")
	fs.BoolVar(&o.Exit, "exit", false, "exit once the history is played and the emails due are sent, instead of going on in real time")
	fs.DurationVar(&o.Progress, "progress", 3*time.Second, "how often to print a progress line (0: never)")
	fs.BoolVar(&o.Verbose, "verbose", false, "log every scheduled pass and sweep")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if o.Contacts < 12 || o.Contacts > 1_000_000 {
		return fmt.Errorf("demo: --contacts %d: use 12 to 1,000,000", o.Contacts)
	}
	if *days < 150 || *days > 3650 {
		return fmt.Errorf("demo: --days %d: use 150 to 3650 (lapsed customers need 120 quiet days)", *days)
	}
	if o.Duration < 0 {
		return fmt.Errorf("demo: --duration %s: must not be negative", o.Duration)
	}
	o.History = time.Duration(*days) * 24 * time.Hour
	fs.Visit(func(f *flag.Flag) { o.HTTPExplicit = o.HTTPExplicit || f.Name == "http-addr" })
	o.HTTPExplicit = o.HTTPExplicit || e.getenv("WAYMARK_HTTP_ADDR") != ""
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	_, err := runDemo(ctx, e, &cfg, o)
	return err
}

// runDemo runs the demo (internal/demo) with e's output.
func runDemo(ctx context.Context, e *env, cfg *config.Config, o demoOptions) (*demoRun, error) {
	return demo.Run(ctx, cfg, o, e.stdout, e.stderr)
}
