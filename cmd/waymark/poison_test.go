package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/mailer"
)

// poisonJourney welcomes everyone at once, unless a hold over a sum() or
// over a trait holds; the template reads a trait too.
const poisonJourney = `rules:
  - {name: vip, from: [awareness], to: consideration, when: 'sum("order_completed", "revenue", "365d") >= 500'}
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
holds:
  - {name: big-spender, when: 'sum("order_completed", "revenue", "30d") > 100000'}
  - {name: level, when: 'traits.level > 3'}
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: welcome
    subject: Welcome
    text: "Glad you are here.{{if .Contact.Traits.vip}} {{len .Contact.Traits.vip}} perks.{{end}}"
`

// sendsFault is the real send store, whose LoadFacts fails on one
// contact's data whenever contact bad is among those loaded.
type sendsFault struct {
	*store.Store
	bad int64
}

func (f sendsFault) LoadFacts(ctx context.Context, q lifecycle.FactsQuery) ([]lifecycle.ContactFacts, error) {
	out, err := f.Store.LoadFacts(ctx, q)
	for _, c := range out {
		if c.ID == f.bad {
			return nil, fmt.Errorf("loading facts: contact %d: %w", c.ID, lifecycle.ErrContactData)
		}
	}
	return out, err
}

// Issue 23: a hold using sum() over an event whose revenue is 1e400 stalled
// that contact's sends and every batch holding it. Now the sum cannot fail,
// and whatever does fail for one contact — its facts, a hold on its traits,
// its template — holds back or fails that contact's send alone, with the
// reason, while the batch's others are sent.
func TestOneContactsFailureNeverStopsTheBatchsSends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.Clone(t)
	env := map[string]string{"DATABASE_URL": url}
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("userId,email,level,vip\n")
	const n = 12
	for i := 1; i <= n; i++ {
		level, vip := "1", "gold"
		switch i {
		case 3:
			level = `"high"` // the level hold cannot compare it with 3
		case 4:
			vip = "5" // len of a number: the template fails for this contact
		}
		fmt.Fprintf(&csv, "u%d,u%d@example.com,%s,%s\n", i, i, level, vip)
	}
	for name, content := range map[string]string{"contacts.csv": csv.String(), "journey.yaml": poisonJourney} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"import", filepath.Join(dir, "contacts.csv")}, {"apply", "-f", filepath.Join(dir, "journey.yaml")}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	id := func(user string) int64 {
		var id int64
		if err := pool.QueryRow(ctx, `SELECT id FROM contacts WHERE user_id = $1`, user).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// u2's order, stored before ingestion refused such numbers.
	if _, err := pool.Exec(ctx, `INSERT INTO events (contact_id, message_id, kind, name, properties, occurred_at)
		VALUES ($1, 'poison', 'track', 'order_completed', '{"revenue": 1e400}', $2)`, id("u2"), clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A tick without SMTP enrols everyone (the sweep reads the sum).
	if out, errOut, err := runWith(t, env, "tick"); err != nil {
		t.Fatalf("tick: %v\n%s\n%s", err, out, errOut)
	}
	if q := queryInt(t, pool, `SELECT count(*) FROM sends WHERE status = 'queued'`); q != n {
		t.Fatalf("%d sends queued, want %d", q, n)
	}

	smtp := smtptest.Start(t)
	d, err := mailer.NewDialer(mailer.Config{Host: smtp.Host(), Port: smtp.Port(), TLS: "none", DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(pool)
	sender := campaigns.NewSender(sendsFault{st, id("u5")}, campaigns.SMTP(d), campaigns.NewRunner(st, log), log, clock.Now,
		campaigns.SenderConfig{From: "shop@example.com", Connections: 2, Holder: "poison-test"})
	if _, err := sender.SendDue(ctx); err != nil {
		t.Fatalf("sending stopped: %v", err)
	}
	got := map[string]bool{}
	for _, m := range smtp.Messages() {
		for _, r := range m.To {
			got[r] = true
		}
	}
	for i := 1; i <= n; i++ {
		addr := fmt.Sprintf("u%d@example.com", i)
		if want := i != 3 && i != 4 && i != 5; got[addr] != want {
			t.Errorf("%s received: %v, want %v", addr, got[addr], want)
		}
	}
	for _, c := range []struct{ user, status, reason string }{
		{"u3", "queued", "held: level could not be evaluated"},
		{"u4", "failed", "rendering"},
		{"u5", "queued", "parked: its facts could not be loaded"},
	} {
		var status, reason string
		if err := pool.QueryRow(ctx, `SELECT status, coalesce(delayed_reason, '') || coalesce(smtp_response, '') FROM sends WHERE contact_id = $1`, id(c.user)).Scan(&status, &reason); err != nil {
			t.Fatal(err)
		}
		if status != c.status || !strings.Contains(reason, c.reason) {
			t.Errorf("%s's send: %s, %q; want %s, %q", c.user, status, reason, c.status, c.reason)
		}
	}
}
