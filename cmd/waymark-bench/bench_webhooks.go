package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/bench"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/webhook"
	"github.com/waymark/waymark/lifecycle"
)

// Target of the webhooks benchmark (issue 20): a sweep that moves every
// contact, with an endpoint wanting stage_changed, at most this much
// slower than the same sweep without one.
const targetWebhookSlowdown = 0.10

// webhooksBenchRule moves every contact in awareness to consideration.
const webhooksBenchRule = `rules:
  - name: everyone
    from: [awareness]
    to: consideration
    when: days_in_stage >= 0
`

// webhooksBenchEndpoint is an endpoint wanting every stage move; %s is
// its URL.
const webhooksBenchEndpoint = `webhooks:
  - name: receiver
    url: %s
    events: [stage_changed]
    secret_env: WAYMARK_BENCH_WEBHOOK_SECRET
`

// cmdBenchWebhooks measures webhooks out:
//
//	waymark-bench webhooks [-contacts 1000000 -rounds 2 -deliver 100000]
//
// A database of -contacts contacts, all in awareness, and a rule that
// moves every one of them: a sweep moves them all. The sweep is timed
// without an endpoint and with one that wants stage_changed (whose
// deliveries the moves' own statement writes to the outbox), alternately,
// -rounds times each, the stages reset in between; the medians are
// compared (target: at most 10% slower). Then the product's deliverer, as
// `waymark serve` runs it, posts -deliver of the outbox's deliveries to a
// local receiver that checks every signature, and the deliveries a second
// are reported.
func cmdBenchWebhooks(ctx context.Context, e *env, args []string) error {
	var cfg config.Config
	fs := e.flags("webhooks", &cfg)
	contacts := fs.Int("contacts", 1_000_000, "contacts, all moved by one sweep")
	rounds := fs.Int("rounds", 2, "sweeps timed without and with the endpoint, alternately")
	deliverN := fs.Int("deliver", 100_000, "deliveries posted to the local receiver, timed (0: skip)")
	if err := e.parse(fs, &cfg, "webhooks", args); err != nil {
		return err
	}
	if *contacts <= 0 || *rounds <= 0 || *deliverN < 0 {
		return errors.New("bench webhooks: -contacts and -rounds must be positive, -deliver not negative")
	}
	server, log, err := e.server(ctx, &cfg)
	if err != nil {
		return err
	}
	out := e.stdout
	fmt.Fprintf(out, "waymark-bench webhooks: %s contacts, GOMAXPROCS %d, %d CPUs, load average %s\n",
		humanize.Comma(int64(*contacts)), runtime.GOMAXPROCS(0), runtime.NumCPU(), bench.LoadAverage())

	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	recv, err := startSignedReceiver(secret)
	if err != nil {
		return err
	}
	defer recv.close()

	db, err := bench.CreateDatabase(ctx, server, bench.DefaultName("webhooks"))
	if err != nil {
		return err
	}
	defer func() { _ = db.Drop(context.Background()) }()
	pool, err := migratedPool(ctx, db.URL, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := bench.LoadSendContacts(ctx, pool, *contacts); err != nil {
		return err
	}
	with := webhooksBenchRule + fmt.Sprintf(webhooksBenchEndpoint, recv.url)

	// sweep resets every contact to awareness, applies src and times one
	// sweep (the campaigns runner as its hook, as the product runs it).
	sweep := func(src string) (lifecycle.SweepStats, error) {
		for _, q := range []string{
			`UPDATE contacts SET stage = 'awareness', stage_entered_at = now() - interval '1 day'`,
			`TRUNCATE transitions, webhook_outbox, webhook_batches`,
			`VACUUM (ANALYZE) contacts`,
		} {
			if _, err := pool.Exec(ctx, q); err != nil {
				return lifecycle.SweepStats{}, err
			}
		}
		if err := bench.Checkpoint(ctx, db.URL); err != nil {
			return lifecycle.SweepStats{}, err
		}
		_, st, err := applyBenchJourney(ctx, pool, "bench-webhooks.yaml", src)
		if err != nil {
			return lifecycle.SweepStats{}, err
		}
		eng := lifecycle.NewEngine(st, log, lifecycle.WithHook(campaigns.NewRunner(st, log)))
		return eng.Sweep(ctx, time.Now())
	}
	fmt.Fprintln(out, "\nround  endpoint        moved       sweep     µs/contact   outbox")
	var without, withHook []float64
	for r := 1; r <= *rounds; r++ {
		for _, on := range []bool{false, true} {
			src, name := webhooksBenchRule, "none"
			if on {
				src, name = with, "stage_changed"
			}
			st, err := sweep(src)
			if err != nil {
				return err
			}
			var queued int64
			// Deliveries queued: in the outbox, and in the batches the
			// deliverer expands.
			if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_outbox) + (SELECT coalesce(sum(cardinality(seqs)), 0) FROM webhook_batches)`).Scan(&queued); err != nil {
				return err
			}
			if st.Moved != *contacts || (on && queued != int64(*contacts)) || (!on && queued != 0) {
				return fmt.Errorf("bench webhooks: the sweep moved %d and queued %d deliveries, want %d and %d", st.Moved, queued, *contacts, map[bool]int{true: *contacts}[on])
			}
			fmt.Fprintf(out, "%-6d %-15s %-11s %-9s %-12.2f %s\n", r, name, humanize.Comma(int64(st.Moved)), secs(st.Elapsed),
				float64(st.Elapsed.Microseconds())/float64(*contacts), humanize.Comma(queued))
			if on {
				withHook = append(withHook, st.Elapsed.Seconds())
			} else {
				without = append(without, st.Elapsed.Seconds())
			}
		}
	}
	slow := median(withHook)/median(without) - 1
	fmt.Fprintf(out, "\nmedians: without an endpoint %.2fs, with %.2fs: %+.1f%% (target at most +%.0f%%)\n",
		median(without), median(withHook), slow*100, targetWebhookSlowdown*100)
	var missed []string
	if slow > targetWebhookSlowdown {
		missed = append(missed, fmt.Sprintf("the sweep with an endpoint %.1f%% slower (target %.0f%%)", slow*100, targetWebhookSlowdown*100))
	}

	if *deliverN > 0 {
		rate, d, err := benchDeliveries(ctx, store.New(pool), log, recv, secret, *deliverN)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "delivering: %s deliveries to a local receiver in %.1fs: %s a second (claims of %d, %d posts at once; every signature checked)\n",
			humanize.Comma(recv.good.Load()), float64(recv.good.Load())/rate, humanize.Comma(int64(rate)), d.Batch, d.Parallel)
	}
	printTargets(out, missed)
	return nil
}

// benchDeliveries runs the product's deliverer (its batch and
// parallelism, as `waymark serve` runs it) until n deliveries reached the
// receiver; it returns the deliveries a second.
func benchDeliveries(ctx context.Context, st *store.Store, log *slog.Logger, recv *signedReceiver, secret []byte, n int) (float64, *webhook.Deliverer, error) {
	env := "whsec_" + base64.StdEncoding.EncodeToString(secret)
	d := webhook.NewDeliverer(st, func(string) string { return env }, &http.Client{Timeout: 15 * time.Second}, log, time.Now, "bench")
	start := time.Now()
	for recv.good.Load() < int64(n) {
		got, err := d.DeliverDue(ctx)
		if err != nil {
			return 0, d, err
		}
		if got == 0 {
			return 0, d, fmt.Errorf("bench webhooks: the outbox ran dry after %d deliveries", recv.good.Load())
		}
		if bad := recv.bad.Load(); bad > 0 {
			return 0, d, fmt.Errorf("bench webhooks: the receiver refused %d deliveries' signatures", bad)
		}
	}
	return float64(recv.good.Load()) / time.Since(start).Seconds(), d, nil
}

// signedReceiver is a local HTTP server that checks each request's
// Standard Webhooks signature and counts the good ones.
type signedReceiver struct {
	url       string
	srv       *http.Server
	good, bad atomic.Int64
}

func startSignedReceiver(secret []byte) (*signedReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &signedReceiver{url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err == nil {
			h := req.Header
			err = webhook.Verify(secret, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), body, time.Now(), 5*time.Minute)
		}
		if err != nil {
			r.bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.good.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *signedReceiver) close() { _ = r.srv.Close() }
