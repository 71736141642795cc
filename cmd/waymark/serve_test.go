package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/app"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// startServe runs `serve` in-process on a fresh database and returns its
// base URL and a pool on its database.
func startServe(t *testing.T, journeyYAML string) (string, *pgxpool.Pool) {
	t.Helper()
	return startServeWith(t, journeyYAML, nil)
}

// startServeWith is startServe with extra environment (SMTP…).
func startServeWith(t *testing.T, journeyYAML string, extra map[string]string) (string, *pgxpool.Pool) {
	t.Helper()
	return startServeOpts(t, journeyYAML, extra, serveOptions{})
}

// serveOptions are the application's options beyond its settings, pool,
// log and Ready, which startServeOpts sets.
type serveOptions = app.Config

// startServeOpts is startServeWith with the application's options (its
// settings, pool, log and Ready are set here).
func startServeOpts(t *testing.T, journeyYAML string, extra map[string]string, opts serveOptions) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.Clone(t)
	if journeyYAML != "" {
		p := filepath.Join(t.TempDir(), "journey.yaml")
		_ = os.WriteFile(p, []byte(journeyYAML), 0o644)
		if _, errOut, err := runWaymark(t, url, "apply", "-f", p); err != nil {
			t.Fatalf("apply: %v\n%s", err, errOut)
		}
	}
	cfg := &config.Config{}
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_HTTP_ADDR": "127.0.0.1:0", "WAYMARK_WRITE_KEY": "wk"}
	for k, v := range extra {
		env[k] = v
	}
	if err := cfg.Load(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	pool, err := app.Connect(ctx, cfg, log, 8)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	opts.Settings, opts.Pool, opts.Log = cfg, pool, log
	opts.Ready = func(a string) { addr <- a }
	a, err := app.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		pool.Close()
	})
	select {
	case a := <-addr:
		return "http://" + a, pool
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", nil
}

func postJSON(t *testing.T, base, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, bytes.NewReader([]byte(body)))
	req.SetBasicAuth("wk", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An ingested event moves its contact at once, without waiting for a
// sweep, and the rule can read the event itself.
func TestServeEvaluatesOnEvents(t *testing.T) {
	t.Parallel()
	base, pool := startServe(t, `rules:
  - name: big-spender
    from: [awareness, consideration, decision]
    to: retention
    when: event?.name == "order_completed" && event.properties.revenue >= 100
  - name: engaged
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 2
`)
	for i, body := range []string{
		`{"userId":"ann","event":"page_viewed","messageId":"m1"}`,
		`{"userId":"ann","event":"page_viewed","messageId":"m2"}`,
		`{"userId":"bo","event":"order_completed","properties":{"revenue":250}}`,
		`{"userId":"cy","event":"order_completed","properties":{"revenue":20}}`,
	} {
		if code := postJSON(t, base, "/v1/track", body); code != 200 {
			t.Fatalf("event %d: status %d", i, code)
		}
	}
	want := map[string]string{"ann": "consideration", "bo": "retention", "cy": "awareness"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]string{}
		rows, _ := pool.Query(context.Background(), "SELECT user_id, stage FROM contacts")
		for rows.Next() {
			var u, s string
			_ = rows.Scan(&u, &s)
			got[u] = s
		}
		rows.Close()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stages %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var trigger string
	_ = pool.QueryRow(context.Background(), "SELECT trigger FROM transitions WHERE rule = 'big-spender'").Scan(&trigger)
	if trigger != "event" {
		t.Fatalf("big-spender move triggered by %q, want event", trigger)
	}
}

// An event that starts a sequence with a 0-delay step is mailed at once,
// not at the next tick; a goal reached by a later event cancels the rest.
func TestServeSendsOnEventsAndStopsAtTheGoal(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	base, pool := startServeWith(t, `sequences:
  - name: cart
    trigger: {event: cart_updated}
    goal: count("order_completed", "enrolment") > 0
    steps:
      - {after: 0h, template: got-it}
      - {after: 1h, template: reminder}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: got-it, subject: "Your cart is saved", text: "We saved it."}
  - {name: reminder, subject: "Still thinking?", text: "Your cart misses you."}
`, map[string]string{"WAYMARK_SMTP_URL": "smtp://" + smtp.Addr() + "?tls=none", "WAYMARK_FROM": "shop@shop.example", "WAYMARK_CRON": "@every 1h"})
	if code := postJSON(t, base, "/v1/identify", `{"userId":"ann","traits":{"email":"ann@example.com"},"messageId":"i1"}`); code != 200 {
		t.Fatalf("identify: %d", code)
	}
	start := time.Now()
	if code := postJSON(t, base, "/v1/track", `{"userId":"ann","event":"cart_updated","messageId":"c1"}`); code != 200 {
		t.Fatalf("track: %d", code)
	}
	msgs := smtp.WaitFor(1, 5*time.Second)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the 0-delay email took %v", took)
	}
	if subj := msgs[0].Header("Subject"); len(subj) != 1 || subj[0] != "Your cart is saved" {
		t.Fatalf("subject %v", subj)
	}
	// Ann buys before the reminder is due (once the first email is
	// recorded sent and the reminder queued): it is cancelled at once.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var queued int
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM sends WHERE step = 1 AND status = 'queued'`).Scan(&queued)
		if queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reminder was not queued after the first email")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := postJSON(t, base, "/v1/track", `{"userId":"ann","event":"order_completed","messageId":"o1"}`); code != 200 {
		t.Fatalf("order: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var status, reason string
		_ = pool.QueryRow(context.Background(), `SELECT e.status, coalesce(s.delayed_reason, '') FROM enrolments e JOIN sends s ON s.enrolment_id = e.id AND s.step = 1`).Scan(&status, &reason)
		if status == "converted" && strings.HasPrefix(reason, "converted: goal reached") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enrolment %q, reminder %q", status, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := smtp.Count(); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}
