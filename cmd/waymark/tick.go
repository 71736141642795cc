package main

import (
	"context"
	"fmt"
	"time"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
)

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
	pool, err := app.Connect(ctx, &cfg, log, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	e.announce(pool)
	now := clock.Now
	if *asOf != "" {
		now = func() time.Time { return at }
	}
	a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: log, Now: now})
	if err != nil {
		return err
	}
	sender := a.Sender()
	sw, err := a.Sweep(ctx, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tick at %s: evaluated %d contacts, %d moved (%d hops) in %.2fs\n",
		at.Format(time.RFC3339), sw.Contacts, sw.Moved, sw.Hops, sw.Elapsed.Seconds())
	conv, err := a.Attribute(ctx, at)
	if err != nil {
		return err
	}
	if conv > 0 {
		fmt.Fprintf(e.stdout, "conversions: %d attributed\n", conv)
	}
	bst, err := a.Broadcasts(ctx, at)
	if err != nil {
		return err
	}
	if bst.Started+bst.Resolved+bst.Decided > 0 {
		fmt.Fprintf(e.stdout, "broadcasts: %d runs started, %d queued (%d emails), %d A/B tests decided\n", bst.Started, bst.Resolved, bst.Queued, bst.Decided)
	}
	if sender == nil {
		fmt.Fprintln(e.stdout, "no SMTP server configured (WAYMARK_SMTP_URL): nothing sent")
		return nil
	}
	defer a.Close()
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
