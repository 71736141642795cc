package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

func cmdApply(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("apply", &cfg, databaseFlags...)
	file := fs.String("f", "", "the journey file (YAML)")
	dry := fs.Bool("dry-run", false, "change nothing; show what the journey would do now")
	asOf := fs.String("as-of", "", "with --dry-run: evaluate at this instant (RFC 3339) instead of now")
	allowLoops := fs.Bool("allow-loops", false, "apply even if rules would move contacts back and forth on every pass")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("apply: name the journey file with -f")
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	at, err := instant(*asOf)
	if err != nil {
		return err
	}
	j, err := journey.Load(*file)
	if err != nil {
		return err
	}
	log := e.logger()
	var pool *pgxpool.Pool
	if *dry {
		// A dry run creates no database and runs no migration.
		pool, err = app.ConnectExisting(ctx, &cfg)
	} else {
		pool, err = app.Connect(ctx, &cfg, log, 4)
	}
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	st := store.New(pool)
	rules := make([]lifecycle.Rule, len(j.Rules))
	for i, r := range j.Rules {
		rules[i] = lifecycle.Rule{Name: r.Name, Version: 0, From: r.From, To: r.To, When: j.Programs[r.Name]}
	}
	eng := lifecycle.NewEngine(st, log)
	if !*dry {
		// Rules that would move contacts back and forth are refused
		// before anything is saved.
		if !*allowLoops {
			rep, err := eng.DryRunWith(ctx, rules, at, nil)
			if err != nil {
				return err
			}
			if len(rep.Loops) > 0 {
				return loopsError(*file, rep.Loops)
			}
		}
		changes, err := st.ApplyJourney(ctx, j, false)
		if err != nil {
			return err
		}
		printChanges(e, changes, false)
		return nil
	}
	changes, err := st.ApplyJourney(ctx, j, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "dry run of %s: nothing was changed\n", *file)
	printChanges(e, changes, true)
	preview, err := campaigns.NewPreview(st, campaigns.Definitions{Sequences: j.Sequences, Offers: j.Offers, Segments: j.Segments})
	if err != nil {
		return err
	}
	rep, err := eng.DryRunWith(ctx, rules, at, preview)
	if err != nil {
		return err
	}
	printDryRun(e, j, rep, preview, at)
	return dryRunBroadcasts(ctx, e, st, eng, j, at)
}

// loopsError refuses a journey whose rules loop.
func loopsError(file string, loops []lifecycle.Loop) error {
	var b strings.Builder
	fmt.Fprintf(&b, "apply: %s: nothing was saved:", file)
	for _, l := range loops {
		b.WriteString("\n  " + l.Sentence())
	}
	b.WriteString("\nChange a condition so that these rules cannot all hold at once (see waymark apply --dry-run), or apply with --allow-loops.")
	return errors.New(b.String())
}

func printChanges(e *env, changes []journey.Change, dry bool) {
	verb := map[bool]string{true: "would be", false: "was"}[dry]
	if len(changes) == 0 {
		fmt.Fprintf(e.stdout, "the journey is already applied: nothing %s changed\n", verb)
	}
	for _, c := range changes {
		fmt.Fprintf(e.stdout, "%s: %s %s\n", c.Kind, c.Name, changeText(c, dry))
	}
}

// printDryRun shows what one pass of the journey would do now: moves per
// rule, loops, and what each sequence and offer would enrol or reward.
func printDryRun(e *env, j *journey.Journey, rep lifecycle.Report, p *campaigns.Preview, at time.Time) {
	fmt.Fprintf(e.stdout, "\nevaluated %d contacts at %s in %.2fs:\n", rep.Stats.Contacts, at.Format(time.RFC3339), rep.Stats.Elapsed.Seconds())
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rule\tmoves\tfrom → to\texamples")
	moved := map[string]bool{}
	for _, ef := range rep.Effects {
		moved[ef.Rule] = true
		fmt.Fprintf(tw, "%s\t%d\t%s → %s\t%s\n", ef.Rule, ef.Contacts, ef.From, ef.To, strings.Join(ef.Examples, ", "))
	}
	for _, r := range j.Rules {
		if !moved[r.Name] {
			fmt.Fprintf(tw, "%s\t0\t\t\n", r.Name)
		}
	}
	tw.Flush()
	if rep.Stats.Errors > 0 {
		fmt.Fprintf(e.stdout, "%d contacts' data did not fit a rule (see the log)\n", rep.Stats.Errors)
	}
	if len(rep.Loops) > 0 {
		fmt.Fprintln(e.stdout, "\nloops (apply refuses them; change a condition so these rules cannot all hold at once):")
		for _, l := range rep.Loops {
			fmt.Fprintf(e.stdout, "  %s\n", l.Sentence())
		}
	}
	if len(p.Sequences) > 0 {
		fmt.Fprintln(e.stdout)
		tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "sequence\ttrigger\twould enrol\texamples")
		for _, s := range p.Sequences {
			if s.Trigger.Kind == campaigns.OnEvent {
				fmt.Fprintf(tw, "%s\t%s\ton events only\t\n", s.Name, s.Trigger)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Trigger, s.Enrol, strings.Join(s.Examples, ", "))
		}
		tw.Flush()
		for _, s := range p.Sequences {
			if s.Missed > 0 {
				fmt.Fprintf(e.stdout, "%s: %d %s through %s, or out of it, in this pass before being enrolled, so %s never get %s (e.g. %s)\n",
					s.Name, s.Missed, plural(s.Missed, "contact moves", "contacts move"), s.Trigger.Stage, plural(s.Missed, "it would", "they would"), s.Name, strings.Join(s.MissedExamples, ", "))
			}
		}
	}
	if len(p.Offers) > 0 {
		fmt.Fprintln(e.stdout)
		tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "offer\teligible\twould reward\texamples")
		for _, o := range p.Offers {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", o.Name, o.Eligible, o.Reward, strings.Join(o.Examples, ", "))
		}
		tw.Flush()
	}
}

func changeText(c journey.Change, dry bool) string {
	if dry {
		switch c.What {
		case "added", "changed", "removed":
			return "would be " + c.What + versionText(c)
		}
		return "would be " + c.What
	}
	return c.What + versionText(c)
}

func versionText(c journey.Change) string {
	if c.Version > 0 && c.What != "removed" {
		return fmt.Sprintf(" (version %d)", c.Version)
	}
	return ""
}

// instant parses an --as-of flag; empty means now.
func instant(s string) (time.Time, error) {
	if s == "" {
		return clock.Now().UTC(), nil
	}
	t, err := ingest.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--as-of: %w", err)
	}
	return t, nil
}
