package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/demo"
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
		pool, err = connectExisting(ctx, &cfg)
	} else {
		pool, err = connect(ctx, &cfg, log, 4)
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
	preview, err := campaigns.NewPreview(st, campaigns.Definitions{Sequences: j.Sequences, Offers: j.Offers})
	if err != nil {
		return err
	}
	rep, err := eng.DryRunWith(ctx, rules, at, preview)
	if err != nil {
		return err
	}
	printDryRun(e, j, rep, preview, at)
	return nil
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

func printChanges(e *env, changes []store.Change, dry bool) {
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

func changeText(c store.Change, dry bool) string {
	if dry {
		switch c.What {
		case "added", "changed", "removed":
			return "would be " + c.What + versionText(c)
		}
		return "would be " + c.What
	}
	return c.What + versionText(c)
}

func versionText(c store.Change) string {
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

func cmdTick(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("tick", &cfg, sendingFlags...)
	asOf := fs.String("as-of", "", "run the pass at this past instant (RFC 3339): windows count back from it, later events are ignored")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	at, err := instant(*asOf)
	if err != nil {
		return err
	}
	log := e.logger()
	pool, err := connect(ctx, &cfg, log, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	st := store.New(pool)
	eng := lifecycle.NewEngine(st, log)
	runner := campaigns.NewRunner(st, log)
	eng.Hook = runner
	now := clock.Now
	if *asOf != "" {
		now = func() time.Time { return at }
	}
	sender, err := newSender(&cfg, st, runner, log, now)
	if err != nil {
		return err
	}
	sw, err := eng.Sweep(ctx, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tick at %s: evaluated %d contacts, %d moved (%d hops) in %.2fs\n",
		at.Format(time.RFC3339), sw.Contacts, sw.Moved, sw.Hops, sw.Elapsed.Seconds())
	if sender == nil {
		fmt.Fprintln(e.stdout, "no SMTP server configured (WAYMARK_SMTP_URL): nothing sent")
		return nil
	}
	defer sender.Close()
	start := time.Now()
	ss, err := sender.SendDue(ctx)
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "sent %d in %.2fs (%.0f/s); %d failed, %d unknown, %d suppressed, %d skipped, %d cancelled, %d expired, %d delayed, %d to retry\n",
		ss.Sent, el.Seconds(), float64(ss.Sent)/max(el.Seconds(), 1e-9), ss.Failed, ss.Unknown, ss.Suppressed, ss.Skipped, ss.Cancelled, ss.Expired, ss.Delayed, ss.Retried)
	if ss.Waiting > 0 {
		fmt.Fprintf(e.stdout, "%d due %s claimed by another sender that is still running: %s for it, or until its lease runs out at %s if it stopped\n",
			ss.Waiting, plural(ss.Waiting, "send is", "sends are"), plural(ss.Waiting, "it waits", "they wait"), ss.WaitingUntil.UTC().Format(time.RFC3339))
	}
	return err
}

func cmdStages(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("stages", &cfg, databaseFlags...)
	asJSON := fs.Bool("json", false, "print a JSON object keyed by stage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	counts, err := st.StageCounts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		m := make(map[string]int64, len(counts))
		for k, v := range counts {
			m[string(k)] = v
		}
		return json.NewEncoder(e.stdout).Encode(m)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	var total int64
	for _, s := range lifecycle.Stages {
		fmt.Fprintf(tw, "%s\t%d\t\n", s, counts[s])
		total += counts[s]
	}
	fmt.Fprintf(tw, "total\t%d\t\n", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if total == 0 {
		if hint := demoHint(ctx, st.Pool()); hint != "" {
			fmt.Fprintln(e.stderr, "waymark: "+hint)
		}
	}
	return nil
}

// demoHint, for a database without contacts, says where the demo's are
// when they are on the same server ("" otherwise).
func demoHint(ctx context.Context, pool *pgxpool.Pool) string {
	if pool == nil {
		return ""
	}
	c := pool.Config().ConnConfig.Copy()
	if c.Database == demo.Database {
		return ""
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, demo.Database).Scan(&exists); err != nil || !exists {
		return ""
	}
	c.Database = demo.Database
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return ""
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM contacts`).Scan(&n); err != nil || n == 0 {
		return ""
	}
	return fmt.Sprintf("no contacts in database %q; the demo's %s contacts are in database %q on the same server: DATABASE_URL=postgres://%s@%s:%d/%s waymark stages",
		pool.Config().ConnConfig.Database, thousands(n), demo.Database, c.User, c.Host, c.Port, demo.Database)
}

func cmdHistory(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("history", &cfg, databaseFlags...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("history: name one contact (id, userId, anonymousId or email)")
	}
	st, done, err := openStore(ctx, e, &cfg)
	if err != nil {
		return err
	}
	defer done()
	id, err := contactRef(ctx, st, "history", fs.Arg(0))
	if err != nil {
		return err
	}
	moves, err := st.History(ctx, id)
	if err != nil {
		return err
	}
	// Whether the stored rules move it back and forth on every pass.
	check, err := lifecycle.NewEngine(st, e.logger()).Check(ctx, id, clock.Now())
	if err != nil {
		return err
	}
	if len(moves) == 0 {
		fmt.Fprintf(e.stdout, "contact %d has not moved since it started in awareness\n", id)
	}
	for i, m := range moves {
		keys := make([]string, 0, len(m.Observed))
		for k := range m.Observed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		saw := make([]string, len(keys))
		for i, k := range keys {
			saw[i] = fmt.Sprintf("%s = %v", k, m.Observed[k])
		}
		back := ""
		if i > 0 && m.From == moves[i-1].To && m.To == moves[i-1].From {
			back = "  ↺ back"
		}
		fmt.Fprintf(e.stdout, "%s  %s → %s  by %s v%d (%s)  saw: %s%s\n", m.At.UTC().Format(time.RFC3339), m.From, m.To, m.Rule, m.Version, m.Trigger, strings.Join(saw, ", "), back)
	}
	if rules, stages, ok := lifecycle.LoopOf(check); ok {
		l := lifecycle.Loop{Rules: rules, Stages: stages}
		n := 0
		for _, m := range moves {
			if slices.Contains(rules, m.Rule) {
				n++
			}
		}
		fmt.Fprintf(e.stdout, "flipping: rules %s move this contact back and forth on every pass, with no new activity (%d %s by them so far); change a condition so they cannot all hold at once (waymark apply --dry-run lists such loops)\n",
			l, n, plural(n, "move", "moves"))
	}
	return nil
}
