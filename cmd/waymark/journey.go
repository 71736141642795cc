package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
)

func cmdApply(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("apply", &cfg)
	file := fs.String("f", "", "the journey file (YAML)")
	dry := fs.Bool("dry-run", false, "change nothing; show what the journey would do now")
	asOf := fs.String("as-of", "", "with --dry-run: evaluate at this instant (RFC 3339) instead of now")
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
	pool, err := connect(ctx, &cfg, log, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)
	changes, err := st.ApplyJourney(ctx, j, *dry)
	if err != nil {
		return err
	}
	if *dry {
		fmt.Fprintf(e.stdout, "dry run of %s: nothing was changed\n", *file)
	}
	verb := map[bool]string{true: "would be", false: "was"}[*dry]
	if len(changes) == 0 {
		fmt.Fprintf(e.stdout, "the journey is already applied: nothing %s changed\n", verb)
	}
	for _, c := range changes {
		fmt.Fprintf(e.stdout, "%s: %s %s\n", c.Kind, c.Name, changeText(c, *dry))
	}
	if !*dry {
		return nil
	}
	rules := make([]lifecycle.Rule, len(j.Rules))
	for i, r := range j.Rules {
		rules[i] = lifecycle.Rule{Name: r.Name, Version: 0, From: r.From, To: r.To, When: j.Programs[r.Name]}
	}
	eng := lifecycle.NewEngine(st, log)
	effects, stats, err := eng.DryRun(ctx, rules, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nevaluated %d contacts at %s in %.2fs:\n", stats.Contacts, at.Format(time.RFC3339), stats.Elapsed.Seconds())
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rule\tmoves\tfrom → to\texamples")
	moved := map[string]bool{}
	for _, ef := range effects {
		moved[ef.Rule] = true
		fmt.Fprintf(tw, "%s\t%d\t%s → %s\t%s\n", ef.Rule, ef.Contacts, ef.From, ef.To, strings.Join(ef.Examples, ", "))
	}
	for _, r := range j.Rules {
		if !moved[r.Name] {
			fmt.Fprintf(tw, "%s\t0\t\t\n", r.Name)
		}
	}
	tw.Flush()
	if stats.Errors > 0 {
		fmt.Fprintf(e.stdout, "%d contacts' data did not fit a rule (see the log)\n", stats.Errors)
	}
	return nil
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
		return time.Now().UTC(), nil
	}
	t, err := ingest.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--as-of: %w", err)
	}
	return t, nil
}

func cmdTick(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("tick", &cfg)
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
	st := store.New(pool)
	eng := lifecycle.NewEngine(st, log)
	runner := campaigns.NewRunner(st, log)
	eng.Hook = runner
	clock := time.Now
	if *asOf != "" {
		clock = func() time.Time { return at }
	}
	sender, err := newSender(&cfg, st, runner, log, clock)
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
	start := time.Now()
	ss, err := sender.SendDue(ctx)
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "sent %d in %.2fs (%.0f/s); %d failed, %d unknown, %d suppressed, %d skipped, %d cancelled, %d expired, %d delayed, %d to retry\n",
		ss.Sent, el.Seconds(), float64(ss.Sent)/max(el.Seconds(), 1e-9), ss.Failed, ss.Unknown, ss.Suppressed, ss.Skipped, ss.Cancelled, ss.Expired, ss.Delayed, ss.Retried)
	return err
}

func cmdStages(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("stages", &cfg)
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
	return tw.Flush()
}

func cmdHistory(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("history", &cfg)
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
	if len(moves) == 0 {
		fmt.Fprintf(e.stdout, "contact %d has not moved since it started in awareness\n", id)
		return nil
	}
	for _, m := range moves {
		keys := make([]string, 0, len(m.Observed))
		for k := range m.Observed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		saw := make([]string, len(keys))
		for i, k := range keys {
			saw[i] = fmt.Sprintf("%s = %v", k, m.Observed[k])
		}
		fmt.Fprintf(e.stdout, "%s  %s → %s  by %s v%d (%s)  saw: %s\n", m.At.UTC().Format(time.RFC3339), m.From, m.To, m.Rule, m.Version, m.Trigger, strings.Join(saw, ", "))
	}
	return nil
}
