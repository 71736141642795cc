package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/migrations"
	"github.com/waymark/waymark/rule"
)

// Targets of the broadcast benchmark (issue 19).
const (
	targetAudience     = 5 * time.Second // the audience of 1,000,000 contacts, stages + a segment
	targetBroadcastMin = 10_000          // emails/s of a broadcast at 64 connections
)

// broadcastBenchJourney is the sweep benchmark's rules, a segment of
// readers and a broadcast to those not yet customers, at 09:00 in each
// contact's zone, with an A/B test of two subject lines.
const broadcastBenchJourney = bench.SweepJourney + `segments:
  - name: readers
    when: count("email_opened", "90d") >= 1 || count("page_viewed", "30d") >= 2
templates:
  - {name: news, subject: "News for {{.Contact.FirstName}}", text: "Hello."}
broadcasts:
  - name: bench
    audience: {stages: [awareness, consideration, decision], segment: readers}
    template: news
    send_at: "2030-01-01T09:00"
    test:
      variants: [{subject: "A"}, {subject: "B"}]
      share: 0.2
      pick_by: clicks
      after: 4h
`

// cmdBenchBroadcast measures broadcasts:
//
//	waymark-bench broadcast [-sizes 100000,300000,1000000 -keep] [-send 200000 -connections 64]
//
// Audience: for each size, a database of the sweep benchmark's contacts and
// events (20 a contact; contacts in five time zones), settled, then the
// broadcast's audience resolved over every contact (stages + the readers
// segment, from the activity rollup, each member's variant and time in
// its zone), and queued as sends. Sending: a broadcast to -send contacts
// into smtp-sink, after a sequence's first step to the same contacts in
// the same run (the rate the sender reaches either way), with the
// process's memory as it goes.
func cmdBenchBroadcast(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("broadcast", &cfg)
	sizes := fs.String("sizes", "100000,300000,1000000", "contacts, a comma-separated list (empty: skip the audience)")
	perContact := fs.Int("events-per-contact", 20, "events generated a contact")
	keep := fs.Bool("keep", false, "keep the databases (waymark_bench_broadcast_N) and reuse them next time")
	sendN := fs.Int("send", 0, "also send a broadcast to this many contacts into smtp-sink, after a sequence to the same (0: skip)")
	conns := fs.Int("connections", 64, "with -send: SMTP connections")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the largest size's resolve to `file`")
	sendProfile := fs.String("send-cpuprofile", "", "with -send: write a CPU profile of the broadcast's sending to `file`")
	if err := e.parse(fs, &cfg, "broadcast", args); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("bench broadcast: -sizes %q: want positive numbers", *sizes)
		}
		ns = append(ns, n)
	}
	if *perContact < 1 || *sendN < 0 || *conns < 1 {
		return errors.New("bench broadcast: -events-per-contact and -connections must be positive, -send not negative")
	}
	server, log, err := e.server(ctx, &cfg)
	if err != nil {
		return err
	}
	out := e.stdout
	fmt.Fprintf(out, "waymark-bench broadcast: GOMAXPROCS %d, %d CPUs, load average %s\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), bench.LoadAverage())
	var missed []string
	if len(ns) > 0 {
		fmt.Fprintf(out, "\naudience: %d events a contact; stages awareness, consideration or decision, and the readers segment; target %s at 1,000,000\n", *perContact, targetAudience)
		fmt.Fprintln(out, "contacts    members   resolve    µs/contact   queue     µs/send   sweep: with the segment, without      CPU waymark, PostgreSQL (resolve)")
		for i, n := range ns {
			profile := ""
			if i == len(ns)-1 {
				profile = *cpuprofile
			}
			m, err := benchAudience(ctx, e, server, log, n, *perContact, *keep, profile)
			if err != nil {
				return err
			}
			missed = append(missed, m...)
		}
	}
	if *sendN > 0 {
		m, err := benchBroadcastSend(ctx, e, server, log, cfg, *sendN, *conns, *sendProfile)
		if err != nil {
			return err
		}
		missed = append(missed, m...)
	}
	printTargets(out, missed)
	return nil
}

// migratedPool connects to url with at most conns connections and
// applies the migrations.
func migratedPool(ctx context.Context, url string, conns int32) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	if _, err := migrations.Apply(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// printTargets ends a benchmark's figures with the targets it missed.
func printTargets(out io.Writer, missed []string) {
	if len(missed) > 0 {
		fmt.Fprintf(out, "\nMISSED: %s\n", strings.Join(missed, "; "))
	} else {
		fmt.Fprintln(out, "\nall targets met")
	}
}

// benchAudience measures resolving and queueing the broadcast's audience
// over n contacts; it returns the targets missed.
func benchAudience(ctx context.Context, e *env, server string, log *slog.Logger, n, perContact int, keep bool, cpuprofile string) ([]string, error) {
	out := e.stdout
	size := bench.SweepSize{Contacts: n, Events: n * perContact}
	db, err := bench.OpenSweepDatabaseNamed(ctx, server, fmt.Sprintf("waymark_bench_broadcast_%d", n), size, keep)
	if err != nil {
		return nil, err
	}
	defer func() {
		if keep {
			return
		}
		if err := db.Drop(context.Background()); err != nil {
			fmt.Fprintf(e.stderr, "waymark-bench broadcast: dropping %s: %v\n", db.Name, err)
		}
	}()
	pool, err := migratedPool(ctx, db.URL, 4)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	prep := io.Discard
	if !db.Reused {
		if _, err := bench.LoadSweepData(ctx, pool, size, time.Now(), prep); err != nil {
			return nil, err
		}
		// Five time zones, so that each member's time is worked out.
		if _, err := pool.Exec(ctx, `UPDATE contacts SET traits = traits || jsonb_build_object('timezone',
			(ARRAY['America/New_York', 'Europe/Paris', 'Asia/Tokyo', 'Australia/Sydney', 'America/Los_Angeles'])[id % 5 + 1])`); err != nil {
			return nil, err
		}
		if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) contacts`); err != nil {
			return nil, err
		}
	}
	j, st, err := applyBenchJourney(ctx, pool, "bench-broadcast.yaml", broadcastBenchJourney)
	if err != nil {
		return nil, err
	}
	// Settled, the rollup built and the segment's members recorded: the steady
	// state a broadcast starts in.
	now := time.Now()
	runner := campaigns.NewRunner(st, log)
	eng := lifecycle.NewEngine(st, log, lifecycle.WithHook(runner))
	if _, err := eng.Sweep(ctx, now); err != nil {
		return nil, err
	}
	// A sweep in the steady state, recording the segment's members as it
	// goes, and one with a hook that reads and does nothing (a hook makes
	// a sweep load traits, as the campaigns runner always is): what the
	// segment costs a sweep.
	withSegment, err := eng.Sweep(ctx, now)
	if err != nil {
		return nil, err
	}
	rulesAlone, err := lifecycle.NewEngine(st, log, lifecycle.WithHook(idleHook{})).Sweep(ctx, now)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `DELETE FROM sends; DELETE FROM broadcast_runs`); err != nil {
		return nil, err
	}
	bench.Checkpoint(ctx, db.URL)
	defs, err := st.Definitions(ctx)
	if err != nil {
		return nil, err
	}
	bc := campaigns.NewBroadcaster(st, lifecycle.NewEngine(st, log), log)
	b := j.Broadcasts[0]
	at, local, err := campaigns.ParseSendAt(b.SendAt)
	if err != nil {
		return nil, err
	}
	// Resolve: who is in it, each one's variant and time, nothing
	// written.
	var members atomic.Int64
	if cpuprofile != "" {
		pf, err := os.Create(cpuprofile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
		defer pf.Close()
	}
	self, pg := bench.ProcessCPU(), bench.DatabaseCPU(ctx, pool, db.Name)
	start := time.Now()
	err = bc.Audience(ctx, defs, b, at, local, now, false, func(_ []lifecycle.ContactFacts, sends []campaigns.BroadcastSend) error {
		members.Add(int64(len(sends)))
		return nil
	})
	resolve := time.Since(start)
	if cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	cpu := fmt.Sprintf("%.2fs, %.2fs", (bench.ProcessCPU() - self).Seconds(), bench.CPUSince(pg, bench.DatabaseCPU(ctx, pool, db.Name)).Seconds())
	if err != nil {
		return nil, err
	}
	// Queue: the run started and its audience queued as sends.
	run, _, err := st.StartRun(ctx, b, at, local, now)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	queued, err := bc.Resolve(ctx, defs, run, now)
	queue := time.Since(start)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "%-11s %-9s %-10s %-12s %-9s %-9s %-36s %s\n", humanize.Comma(int64(n)), humanize.Comma(members.Load()), secs(resolve),
		fmt.Sprintf("%.2f", float64(resolve.Microseconds())/float64(n)), secs(queue), fmt.Sprintf("%.1f", float64(queue.Microseconds())/float64(max(queued, 1))),
		secs(withSegment.Elapsed)+", "+secs(rulesAlone.Elapsed), cpu)
	if n == 1_000_000 && resolve > targetAudience {
		return []string{fmt.Sprintf("the audience of 1,000,000 contacts in %s (target %s)", secs(resolve), targetAudience)}, nil
	}
	return nil, nil
}

// benchBroadcastSend sends a sequence's first step and then a broadcast to
// n contacts into smtp-sink, in one run, and compares the rates; memory is
// this process's RSS as the broadcast goes.
func benchBroadcastSend(ctx context.Context, e *env, server string, log *slog.Logger, cfg config.Config, n, conns int, profile string) ([]string, error) {
	out := e.stdout
	sink, err := bench.StartSink(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench broadcast: %w", err)
	}
	defer sink.Stop()
	db, err := bench.CreateDatabase(ctx, server, bench.DefaultName("broadcast_send"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Drop(context.Background()) }()
	pool, err := migratedPool(ctx, db.URL, 4)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := bench.LoadSendContacts(ctx, pool, n); err != nil {
		return nil, err
	}
	jsrc, err := bench.SendJourney("short")
	if err != nil {
		return nil, err
	}
	// The same email as a broadcast to everyone, due now.
	jsrc += "broadcasts:\n  - {name: bench, template: " + bench.SendTemplateName + ", send_at: \"" + time.Now().Add(-time.Minute).UTC().Format(time.RFC3339) + "\"}\n"
	_, _, err = applyBenchJourney(ctx, pool, "bench-broadcast-send.yaml", jsrc)
	if err != nil {
		return nil, err
	}
	cfg.SMTPURL = fmt.Sprintf("smtp://%s?tls=none&pool=%d", sink.Addr(), conns)
	cfg.From = "Fernwood Supply <news@fernwood.example>"
	cfg.PostalAddress = "Fernwood Supply, 12 Trail Road, Portland, OR 97201"
	cfg.PublicURL = "https://fernwoodsupply.example"
	if err := cfg.Load(func(string) string { return "" }); err != nil {
		return nil, err
	}
	a, err := app.New(ctx, app.Config{Settings: &cfg, Pool: pool, Log: log, Now: time.Now})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	fmt.Fprintf(out, "\nsending: %d contacts into smtp-sink, %d SMTP connections, a short text email\n", n, conns)
	send := func(what, profile string) (float64, error) {
		if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) sends, contacts`); err != nil {
			return 0, err
		}
		bench.Checkpoint(ctx, db.URL)
		var rss []string
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					rss = append(rss, strconv.Itoa(procMemKB(os.Getpid(), "VmRSS")/1024))
				}
			}
		}()
		stopProfile := func() {}
		if profile != "" {
			pf, err := os.Create(profile)
			if err != nil {
				return 0, err
			}
			if err := pprof.StartCPUProfile(pf); err != nil {
				pf.Close()
				return 0, err
			}
			stopProfile = func() { pprof.StopCPUProfile(); pf.Close() }
		}
		start := time.Now()
		ss, err := a.Sender().SendDue(ctx)
		el := time.Since(start)
		stopProfile()
		close(stop)
		<-done
		if err != nil {
			return 0, err
		}
		rate := float64(ss.Sent) / el.Seconds()
		fmt.Fprintf(out, "  %-9s sent %d in %s = %.0f emails/s; RSS every 2 s (MB): %s\n", what, ss.Sent, secs(el), rate, strings.Join(rss, " "))
		return rate, nil
	}
	if _, err := a.Sweep(ctx, time.Now()); err != nil { // enrols everyone in welcome
		return nil, err
	}
	seq, err := send("sequence", "")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	bst, err := a.Broadcasts(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  broadcast: %d sends queued in %s\n", bst.Queued, secs(time.Since(start)))
	bc, err := send("broadcast", profile)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  broadcast / sequence rate: %.2f; peak RSS %d MB\n", bc/seq, procMemKB(os.Getpid(), "VmHWM")/1024)
	var missed []string
	if conns == 64 && bc < targetBroadcastMin {
		missed = append(missed, fmt.Sprintf("a broadcast at %.0f emails/s at 64 connections (target %d)", bc, targetBroadcastMin))
	}
	return missed, nil
}

// idleHook is a lifecycle hook that reads and does nothing.
type idleHook struct{}

func (idleHook) Needs(context.Context) ([]rule.Aggregate, error) { return nil, nil }
func (idleHook) AfterBatch(context.Context, []lifecycle.ContactFacts, time.Time, string) error {
	return nil
}

// applyBenchJourney parses src and applies it to the database.
func applyBenchJourney(ctx context.Context, pool *pgxpool.Pool, name, src string) (*journey.Journey, *store.Store, error) {
	j, err := journey.Parse(name, []byte(src))
	if err != nil {
		return nil, nil, err
	}
	st := store.New(pool)
	if _, err := st.ApplyJourney(ctx, j, false); err != nil {
		return nil, nil, err
	}
	return j, st, nil
}
