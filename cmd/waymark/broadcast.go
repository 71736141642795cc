package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

// cmdBroadcast follows and steers broadcasts: list, status (with
// --dry-run, who it would reach now), pause, resume, cancel, test (to seed
// addresses) and preview (the dry run alone).
func cmdBroadcast(ctx context.Context, e *env, args []string) error {
	what := args[0]
	var cfg config.Config
	flags := databaseFlags
	if what == "test" {
		flags = sendingFlags
	}
	fs := e.flags("broadcast "+what, &cfg, flags...)
	asJSON := fs.Bool("json", false, "print JSON")
	dry := new(bool)
	if what == "status" {
		dry = fs.Bool("dry-run", false, "also show who it would reach if it ran now, changing nothing")
	}
	reason := new(string)
	if what == "cancel" {
		reason = fs.String("reason", "cancelled by hand", "why, recorded on each cancelled email")
	}
	var to, tone *string
	if what == "test" {
		to = fs.String("to", "", "the seed addresses, comma-separated")
		tone = fs.String("tone", "", "the tone to write in (default: the default tone)")
	}
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case what == "list" && len(pos) > 0:
		return fmt.Errorf("broadcast list: unexpected argument %q", pos[0])
	case what != "list" && len(pos) != 1:
		return fmt.Errorf("broadcast %s: name one broadcast (waymark broadcast list)", what)
	}
	if err := cfg.Load(e.getenv); err != nil {
		return err
	}
	pool, err := app.Connect(ctx, &cfg, e.logger(), 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	st := store.New(pool)
	if what == "list" {
		return listBroadcasts(ctx, e, st, *asJSON)
	}
	name := pos[0]
	b, err := st.Broadcast(ctx, name)
	if errors.Is(err, campaigns.ErrNoBroadcast) {
		return fmt.Errorf("broadcast %s: no broadcast %q (waymark broadcast list)", what, name)
	}
	if err != nil {
		return err
	}
	now := clock.Now()
	switch what {
	case "status":
		if err := broadcastStatus(ctx, e, st, b, *asJSON); err != nil {
			return err
		}
		if *dry {
			return previewBroadcast(ctx, e, st, b.Broadcast, now, *asJSON)
		}
	case "preview":
		return previewBroadcast(ctx, e, st, b.Broadcast, now, *asJSON)
	case "pause":
		n, err := st.PauseBroadcast(ctx, name)
		if err != nil {
			return fmt.Errorf("broadcast pause: %w", err)
		}
		fmt.Fprintf(e.stdout, "paused %s: its %d queued %s wait, none dropped, until 'waymark broadcast resume %s' (an email already being sent goes out; runs still start, their emails wait too)\n", name, n, plural(n, "email", "emails"), name)
	case "resume":
		n, err := st.ResumeBroadcast(ctx, name, now)
		if errors.Is(err, campaigns.ErrBroadcastState) {
			return fmt.Errorf("broadcast resume: %q is not paused", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "resumed %s: %d waiting %s released, each at its own time, or now if that has passed\n", name, n, plural(n, "email was", "emails were"))
	case "cancel":
		n, err := st.CancelBroadcast(ctx, name, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "cancelled %s: %d queued %s cancelled (%q); no run of it starts again\n", name, n, plural(n, "email", "emails"), *reason)
	case "test":
		var seeds []string
		for _, a := range strings.Split(*to, ",") {
			if a = strings.TrimSpace(a); a != "" {
				seeds = append(seeds, a)
			}
		}
		if len(seeds) == 0 {
			return errors.New("broadcast test: give the seed addresses with --to a@example.com[,b@example.com]")
		}
		a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: e.logger()})
		if err != nil {
			return err
		}
		sender := a.Sender()
		if sender == nil {
			return fmt.Errorf("broadcast test: %w", campaigns.ErrNoMailer)
		}
		defer a.Close()
		res, err := sender.SendSeeds(ctx, b.Broadcast, seeds, *tone)
		for _, r := range res {
			state := "sent"
			if !r.Sent {
				state = "NOT sent"
			}
			fmt.Fprintf(e.stdout, "%s %s: %q (variant %d, tone %s): %s\n", state, r.To, r.Subject, r.Variant, r.Tone, r.Result)
		}
		return err
	}
	return nil
}

func listBroadcasts(ctx context.Context, e *env, st *store.Store, asJSON bool) error {
	bs, err := st.Broadcasts(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, b := range bs {
			if err := enc.Encode(broadcastJSON(b)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(bs) == 0 {
		fmt.Fprintln(e.stdout, "no broadcasts: add them under broadcasts: in the journey file, or create them through the API")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "broadcast\tstate\twhen\taudience\ttemplate\tlast run")
	for _, b := range bs {
		last := "none yet"
		if !b.LastRun.IsZero() {
			last = b.LastRun.UTC().Format("2006-01-02 15:04")
		}
		tmpl := b.Template
		if b.Test != nil {
			tmpl += fmt.Sprintf(" (A/B, %d variants)", len(b.Test.Variants))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.State, b.When(), b.Audience, tmpl, last)
	}
	return tw.Flush()
}

// broadcastJSON is a broadcast as the CLI and the API write it.
func broadcastJSON(b campaigns.StoredBroadcast) map[string]any {
	out := map[string]any{"name": b.Name, "state": b.State, "source": b.Source, "when": b.When(), "audience": b.Audience.String(), "template": b.Template}
	if b.StateReason != "" {
		out["state_reason"] = b.StateReason
	}
	if !b.LastRun.IsZero() {
		out["last_run"] = b.LastRun
	}
	return out
}

func broadcastStatus(ctx context.Context, e *env, st *store.Store, b campaigns.StoredBroadcast, asJSON bool) error {
	runs, err := st.BroadcastProgress(ctx, b.Name)
	if err != nil {
		return err
	}
	if asJSON {
		out := broadcastJSON(b)
		var rs []any
		for _, r := range runs {
			rs = append(rs, map[string]any{"run": r.Run.ID, "at": r.Run.ScheduledFor, "local": r.Run.Local, "progress": r.Progress, "reasons": r.Reasons, "variants": r.Variants, "decision": r.Run.Decision})
		}
		out["runs"] = rs
		return json.NewEncoder(e.stdout).Encode(out)
	}
	fmt.Fprintf(e.stdout, "%s: %s", b.Name, b.State)
	if b.StateReason != "" {
		fmt.Fprintf(e.stdout, " (%s)", b.StateReason)
	}
	fmt.Fprintf(e.stdout, "; %s; to %s; template %s", b.When(), b.Audience, b.Template)
	if b.Throttle > 0 {
		fmt.Fprintf(e.stdout, "; at most %g emails a second", b.Throttle)
	}
	fmt.Fprintln(e.stdout)
	if t := b.Test; t != nil {
		var labels []string
		for i := range t.Variants {
			labels = append(labels, t.Label(i))
		}
		fmt.Fprintf(e.stdout, "A/B test on %.0f%% of the audience, picked by %s %s after the first test email: %s\n", t.Share*100, t.PickBy, duration(t.After), strings.Join(labels, ", "))
	}
	if len(runs) == 0 {
		fmt.Fprintln(e.stdout, "no run yet")
	}
	for _, r := range runs {
		p := r.Progress
		at := r.Run.ScheduledFor.UTC().Format("2006-01-02 15:04 UTC")
		if r.Run.Local {
			at = r.Run.ScheduledFor.UTC().Format("2006-01-02 15:04") + " in each contact's zone"
		}
		fmt.Fprintf(e.stdout, "\nrun %d (%s): audience %d: queued %d, deferred %d, awaiting the winner %d, sending %d, sent %d, failed %d, unknown %d; suppressed %d, skipped %d, cancelled %d, expired %d\n",
			r.Run.ID, at, p.Audience, p.Queued, p.Deferred, p.AwaitingWinner, p.Sending, p.Sent, p.Failed, p.Unknown, p.Suppressed, p.Skipped, p.Cancelled, p.Expired)
		if r.Run.ResolvedAt == nil {
			fmt.Fprintln(e.stdout, "  its audience is being queued")
		}
		for _, rc := range r.Reasons {
			fmt.Fprintf(e.stdout, "  %d %s\n", rc.Count, rc.Reason)
		}
		for _, v := range r.Variants {
			who := "the rest"
			if v.Test {
				who = "the test share"
			}
			fmt.Fprintf(e.stdout, "  %s, %s: sent %d, opened %d, clicked %d (people)\n", v.Label, who, v.Sent, v.Opened, v.Clicked)
		}
		if d := r.Run.Decision; d != nil {
			fmt.Fprintf(e.stdout, "  decided %s: %s\n  rule: %s\n", d.At.UTC().Format("2006-01-02 15:04 UTC"), d.Reason, d.Rule)
		} else if r.Run.DecideAt != nil {
			fmt.Fprintf(e.stdout, "  the A/B test is decided at %s\n", r.Run.DecideAt.UTC().Format("2006-01-02 15:04 UTC"))
		}
	}
	return nil
}

// previewBroadcast prints who b would reach if it ran now.
func previewBroadcast(ctx context.Context, e *env, st *store.Store, b campaigns.Broadcast, now time.Time, asJSON bool) error {
	defs, err := st.Definitions(ctx)
	if err != nil {
		return err
	}
	eng := lifecycle.NewEngine(st, e.logger())
	p, err := campaigns.NewBroadcaster(st, eng, e.logger()).Preview(ctx, defs, b, st, now)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(p)
	}
	printPreview(e, b, p)
	return nil
}

func printPreview(e *env, b campaigns.Broadcast, p campaigns.AudiencePreview) {
	fmt.Fprintf(e.stdout, "dry run of broadcast %s (nothing changed): it would reach %d %s now", b.Name, p.Audience, plural(p.Audience, "contact", "contacts"))
	if p.Audience > 0 {
		fmt.Fprintf(e.stdout, " (e.g. %s)", strings.Join(p.Examples, ", "))
	}
	fmt.Fprintln(e.stdout)
	var stages []string
	for _, s := range rule.Stages {
		if n := p.ByStage[string(s)]; n > 0 {
			stages = append(stages, fmt.Sprintf("%s %d", s, n))
		}
	}
	if len(stages) > 0 {
		fmt.Fprintf(e.stdout, "  by stage: %s\n", strings.Join(stages, ", "))
	}
	if p.Unreachable > 0 {
		fmt.Fprintf(e.stdout, "  %d more in its stages and segment are unsubscribed or have no address\n", p.Unreachable)
	}
	if p.Test != nil {
		var vs []string
		for i, n := range p.Test {
			vs = append(vs, fmt.Sprintf("variant %d: %d", i+1, n))
		}
		fmt.Fprintf(e.stdout, "  A/B test: %s; the winner to the other %d\n", strings.Join(vs, ", "), p.Rest)
	}
	if p.Audience > 0 {
		if p.Local {
			fmt.Fprintf(e.stdout, "  sent at %s in each contact's zone: from %s to %s\n", p.At.Format("2006-01-02 15:04"), p.First.UTC().Format(time.RFC3339), p.Last.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(e.stdout, "  sent from %s", p.First.UTC().Format(time.RFC3339))
			if !p.Last.Equal(p.First) {
				fmt.Fprintf(e.stdout, " to %s (throttled)", p.Last.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(e.stdout)
		}
	}
}

// dryRunBroadcasts shows, in apply --dry-run, who each of the journey's
// broadcasts would reach now, by the journey's own segments.
func dryRunBroadcasts(ctx context.Context, e *env, st *store.Store, eng *lifecycle.Engine, j *journey.Journey, at time.Time) error {
	if len(j.Broadcasts) == 0 {
		return nil
	}
	defs := campaigns.Definitions{Segments: j.Segments, Settings: j.Settings}
	bc := campaigns.NewBroadcaster(st, eng, e.logger())
	for _, b := range j.Broadcasts {
		p, err := bc.Preview(ctx, defs, b, st, at)
		if err != nil {
			return fmt.Errorf("broadcast %s: %w", b.Name, err)
		}
		fmt.Fprintln(e.stdout)
		printPreview(e, b, p)
	}
	return nil
}
