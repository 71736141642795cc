//go:build fault

package main

// PostgreSQL restarted (pg_ctl restart -m immediate: a crash and recovery)
// while `waymark serve` is sending. The server is a private one with its
// own data directory and port, so the shared server other tests use is
// never touched.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

const pgRestartJourney = `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0s, template: hello}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: hello, subject: "Hello {{.Contact.FirstName}}", text: "Welcome."}
`

// PostgreSQL crashes and recovers twice while serve sends 1,200 emails at
// 100 a second over four SMTP connections: sending resumes on its own
// within 30 seconds each time, no Message-ID reaches the server twice,
// every email ends sent or (at most one per connection per crash)
// unknown, and none is left on the wire.
func TestFaultPostgresRestartDuringSending(t *testing.T) {
	t.Parallel()
	const (
		contacts = 1200
		conns    = 4
		restarts = 2
	)
	url, dataDir := pgtest.Private(t)
	bin := buildFaultBinary(t)
	srv := smtptest.Start(t)
	env := map[string]string{
		"DATABASE_URL":     url,
		"WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none&pool=%d&rate=100", srv.Addr(), conns),
		"WAYMARK_FROM":     "shop@shop.example",
		"WAYMARK_CRON":     "@every 1h",
	}
	seedFaultJourney(t, env, contacts, pgRestartJourney)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	p := startServeProc(t, bin, "serve", env)
	for r := 1; r <= restarts; r++ {
		at := r * contacts / (restarts + 2)
		if !waitUntil(90*time.Second, func() bool { return srv.Count() >= at }) {
			t.Fatalf("sending did not reach %d messages: %d", at, srv.Count())
		}
		pgtest.PgCtl(t, dataDir, "restart", "-m", "immediate", "-w", "-t", "60")
		back := time.Now()
		// Messages marked on the wire before the crash may still arrive;
		// sending has resumed once clearly more than those have.
		base := srv.Count() + conns
		if !waitUntil(60*time.Second, func() bool { return srv.Count() > base }) {
			t.Fatalf("restart %d: sending did not resume within 60s (%d messages)", r, srv.Count())
		}
		resumed := time.Since(back)
		t.Logf("restart %d at %d messages: sending resumed %v after PostgreSQL was back", r, at, resumed.Round(time.Millisecond))
		if resumed > 30*time.Second {
			t.Errorf("restart %d: sending resumed %v after PostgreSQL was back, want within 30s", r, resumed)
		}
	}
	if !waitUntil(120*time.Second, func() bool {
		c := sendCounts(t, pool)
		return c["sent"]+c["unknown"]+c["failed"] >= contacts
	}) {
		t.Fatalf("sends did not all end: %v", sendCounts(t, pool))
	}
	c := sendCounts(t, pool)
	if c["sent"]+c["unknown"] != contacts || c["unknown"] > conns*restarts {
		t.Errorf("sends by status %v: want sent + unknown = %d with at most %d unknown", c, contacts, conns*restarts)
	}
	n := checkDelivery(t, pool, srv)
	if n < c["sent"] || n > c["sent"]+c["unknown"] {
		t.Errorf("the server received %d distinct messages; %d sent and %d unknown recorded", n, c["sent"], c["unknown"])
	}
	t.Logf("sends %v, %d distinct messages received", c, n)
	p.stop(t)
}
