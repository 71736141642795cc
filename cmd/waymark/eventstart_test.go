package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

const cartJourney = `sequences:
  - name: cart
    trigger: {event: cart_updated}
    goal: count("order_completed", "enrolment") > 0
    steps:
      - {after: 1h, template: reminder}
      - {after: 24h, template: last-call}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
  frequency_cap: {max: 0, per: 7d}
templates:
  - {name: reminder, subject: "Your cart is saved", text: "We saved it."}
  - {name: last-call, subject: "Last call", text: "Still there."}
`

// A sequence started by an event starts at the event's time, however late
// Waymark gets to the event (DESIGN.md, "How data flows"): history
// imported and a backtest over it send what a live Waymark would have sent
// then, never a reminder for a cart the contact ordered after, nor one for
// an event too old to start a sequence; and a step far past its due time
// expires, recorded, instead of going out.
func TestImportedEventsStartSequencesAtTheirTime(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	srv := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_FROM": "shop@shop.example"}
	withSMTP := map[string]string{"DATABASE_URL": url, "WAYMARK_FROM": "shop@shop.example", "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", srv.Addr())}
	// Yesterday 11:00 UTC, and times from there.
	base := clock.Now().UTC().Truncate(24 * time.Hour).Add(-24*time.Hour + 11*time.Hour)
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	prepare(t, env, map[string]string{
		"contacts.csv": "userId,email\ncara,cara@example.com\nolly,olly@example.com\nold,old@example.com\nlate,late@example.com\n",
		// cara: a cart at 11:00. olly: a cart at 11:00 and an order at
		// 11:30, before anything ran. old: a cart two years ago. late: a
		// cart 30 hours before the backtest, its reminder due 29 hours
		// before it (more than sending: late_expiry, a day, overdue).
		"events.csv": "userId,event,timestamp\n" +
			"cara,cart_updated," + at(0) + "\n" +
			"olly,cart_updated," + at(0) + "\nolly,order_completed," + at(30*time.Minute) + "\n" +
			"old,cart_updated," + at(-730*24*time.Hour) + "\n" +
			"late,cart_updated," + at(5*time.Hour-30*time.Hour) + "\n",
		"journey.yaml": cartJourney,
	}, "import contacts.csv", "import events.csv", "apply -f journey.yaml")
	// A backtest at 16:00: the reminder due at 12:00 goes out.
	if out, errOut, err := runWith(t, withSMTP, "tick", "--as-of", at(5*time.Hour)); err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	} else if got := received(t, srv.Messages()); strings.Join(got, "|") != "cara@example.com: Your cart is saved" {
		t.Fatalf("the backtest at 16:00 sent %q, want only cara's reminder (tick said %s)", got, out)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	type row struct {
		who                   string
		enrolled, due, sentAt time.Time
		status                string
	}
	var rows []row
	r, err := pool.Query(context.Background(), `SELECT c.user_id, e.enrolled_at, s.due_at, coalesce(s.sent_at, 'epoch'), s.status
		FROM enrolments e JOIN contacts c ON c.id = e.contact_id JOIN sends s ON s.enrolment_id = e.id AND s.step = 0 ORDER BY c.user_id`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var x row
		if err := r.Scan(&x.who, &x.enrolled, &x.due, &x.sentAt, &x.status); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, x)
	}
	r.Close()
	if len(rows) != 1 || rows[0].who != "cara" {
		t.Fatalf("enrolments %+v, want cara's alone (olly ordered after the cart, old's and late's carts are too old)", rows)
	}
	if c := rows[0]; !c.enrolled.Equal(base) || !c.due.Equal(base.Add(time.Hour)) || c.status != "sent" || !c.sentAt.Equal(base.Add(5*time.Hour)) {
		t.Errorf("cara: enrolled %s, reminder due %s, %s at %s; want enrolled at the cart (%s), due an hour later, sent by the 16:00 backtest",
			c.enrolled, c.due, c.status, c.sentAt, base)
	}
	// A second backtest finds the same cart and enrols nobody again.
	if _, errOut, err := runWith(t, withSMTP, "tick", "--as-of", at(6*time.Hour)); err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}
	var enrolments int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM enrolments`).Scan(&enrolments)
	if enrolments != 1 || srv.Count() != 1 {
		t.Errorf("after a second backtest: %d enrolments and %d emails, want 1 and 1", enrolments, srv.Count())
	}

	// The last call is due at 16:00 the next day. Nothing runs until two
	// days after that: it expires, recorded, instead of going out late.
	out, errOut, err := runWith(t, withSMTP, "tick", "--as-of", at(5*time.Hour+72*time.Hour))
	if err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}
	var status, reason string
	_ = pool.QueryRow(context.Background(), `SELECT status, coalesce(delayed_reason, '') FROM sends WHERE step = 1`).Scan(&status, &reason)
	if status != "expired" || !strings.Contains(reason, "late_expiry") || !strings.Contains(out, "1 expired") || srv.Count() != 1 {
		t.Errorf("the last call two days overdue: %s (%q), %d emails (tick said %s); want expired with the reason, not sent", status, reason, srv.Count(), out)
	}
}

// The same promise live: an event that reaches Waymark late (a client
// that queued it offline) starts its sequence at its own time, and a
// contact who ordered after the cart, both arriving together, gets no
// reminder.
func TestServeStartsEventSequencesAtTheEventsTime(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	base, pool := startServeWith(t, cartJourney, map[string]string{"WAYMARK_SMTP_URL": "smtp://" + srv.Addr() + "?tls=none", "WAYMARK_FROM": "shop@shop.example"})
	now := clock.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	body := `{"batch":[
		{"type":"identify","userId":"ann","traits":{"email":"ann@example.com"},"messageId":"i1"},
		{"type":"identify","userId":"bob","traits":{"email":"bob@example.com"},"messageId":"i2"},
		{"type":"identify","userId":"cyd","traits":{"email":"cyd@example.com"},"messageId":"i3"},
		{"type":"track","userId":"ann","event":"cart_updated","timestamp":"` + ts(-3*time.Hour) + `","messageId":"c1"},
		{"type":"track","userId":"bob","event":"cart_updated","timestamp":"` + ts(-3*time.Hour) + `","messageId":"c2"},
		{"type":"track","userId":"bob","event":"order_completed","timestamp":"` + ts(-2*time.Hour) + `","messageId":"o2"},
		{"type":"track","userId":"cyd","event":"cart_updated","timestamp":"` + ts(-50*time.Hour) + `","messageId":"c3"}]}`
	if code := postJSON(t, base, "/v1/batch", body); code != 200 {
		t.Fatalf("batch: %d", code)
	}
	msgs := srv.WaitFor(1, 10*time.Second)
	if got := received(t, msgs); strings.Join(got, "|") != "ann@example.com: Your cart is saved" {
		t.Fatalf("received %q, want ann's reminder alone", got)
	}
	var enrolled, due time.Time
	if err := pool.QueryRow(context.Background(), `SELECT e.enrolled_at, s.due_at FROM enrolments e JOIN contacts c ON c.id = e.contact_id
		JOIN sends s ON s.enrolment_id = e.id AND s.step = 0 WHERE c.user_id = 'ann'`).Scan(&enrolled, &due); err != nil {
		t.Fatal(err)
	}
	if !enrolled.Equal(now.Add(-3*time.Hour)) || !due.Equal(now.Add(-2*time.Hour)) {
		t.Errorf("ann enrolled at %s, reminder due %s; want the cart's time %s and an hour after", enrolled, due, now.Add(-3*time.Hour))
	}
	// Nothing else comes: bob ordered after his cart, cyd's cart is too old.
	time.Sleep(500 * time.Millisecond)
	var others int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM enrolments e JOIN contacts c ON c.id = e.contact_id WHERE c.user_id <> 'ann'`).Scan(&others)
	if others != 0 || srv.Count() != 1 {
		t.Errorf("%d other enrolments, %d emails; want none and 1", others, srv.Count())
	}
}

// A contact exists from its first event or identify: a list of contacts
// imported first (stamped with the import's time) and their history
// imported after it are seen by a backtest of that history.
func TestBacktestAfterImportSeesTheImportedContacts(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	env := map[string]string{"DATABASE_URL": url}
	first := clock.Now().UTC().Add(-72 * time.Hour).Truncate(time.Second)
	dir := prepare(t, env, map[string]string{
		"contacts.csv": "userId,email\nann,ann@example.com\nbo,bo@example.com\ncy,cy@example.com\n",
		// ann and bo have history from three days ago; cy has none.
		"events.csv": "userId,event,timestamp\n" +
			"ann,product_viewed," + first.Format(time.RFC3339) + "\n" +
			"ann,product_viewed," + first.Add(time.Hour).Format(time.RFC3339) + "\n" +
			"bo,order_completed," + first.Add(2*time.Hour).Format(time.RFC3339) + "\n",
		"journey.yaml": `rules:
  - name: customer
    from: [awareness, consideration, decision]
    to: retention
    when: ever("order_completed")
`,
	}, "import contacts.csv", "import events.csv")
	yesterday := clock.Now().UTC().Add(-24 * time.Hour).Format(time.RFC3339)
	out, errOut, err := runWith(t, env, "apply", "-f", filepath.Join(dir, "journey.yaml"), "--dry-run", "--as-of", yesterday)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "evaluated 2 contacts") || !strings.Contains(out, "customer") {
		t.Errorf("a backtest of yesterday after the import said:\n%s\nwant ann and bo evaluated (cy has no history before today), bo moved by customer", out)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for who, want := range map[string]time.Time{"ann": first, "bo": first.Add(2 * time.Hour)} {
		var created, entered time.Time
		if err := pool.QueryRow(context.Background(), `SELECT created_at, stage_entered_at FROM contacts WHERE user_id = $1`, who).Scan(&created, &entered); err != nil {
			t.Fatal(err)
		}
		if !created.Equal(want) || !entered.Equal(want) {
			t.Errorf("%s: created %s, in its stage since %s; want both %s, its first event", who, created, entered, want)
		}
	}
}

// A held send waits while its hold lasts, and expires once it has been
// held longer than sending: hold_expiry, counted from when the hold
// began (each wait gives the send a new due time; the expiry must not
// restart with it).
func TestHeldSendExpiresAfterHoldExpiry(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	srv := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_FROM": "shop@shop.example", "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", srv.Addr())}
	now := clock.Now().UTC().Truncate(time.Second)
	prepare(t, env, map[string]string{
		"events.csv":   "userId,event,timestamp\ncy,support_ticket_opened," + now.Add(-time.Hour).Format(time.RFC3339) + "\n",
		"contacts.csv": "userId,email\ncy,cy@example.com\n",
		"journey.yaml": `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: hi}
holds:
  - name: open-complaint
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
  hold_expiry: 1d
templates:
  - {name: hi, subject: Hi, text: Hello}
`,
	}, "import contacts.csv", "import events.csv", "apply -f journey.yaml")
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	state := func() (status, reason string) {
		_ = pool.QueryRow(context.Background(), `SELECT status, coalesce(delayed_reason, '') FROM sends`).Scan(&status, &reason)
		return
	}
	// Held at first, and twelve hours later, and a further twelve.
	for _, later := range []time.Duration{0, 12 * time.Hour, 23 * time.Hour} {
		if _, errOut, err := runWith(t, env, "tick", "--as-of", now.Add(later).Format(time.RFC3339)); err != nil {
			t.Fatalf("tick: %v\n%s", err, errOut)
		}
		if st, why := state(); st != "queued" || why != "held: open-complaint" {
			t.Fatalf("after %s: %s (%q), want queued and held", later, st, why)
		}
	}
	// Past a day of holding: expired, with the reason, never sent.
	if _, errOut, err := runWith(t, env, "tick", "--as-of", now.Add(25*time.Hour).Format(time.RFC3339)); err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}
	if st, why := state(); st != "expired" || !strings.Contains(why, "held: open-complaint, for longer than") || srv.Count() != 0 {
		t.Errorf("held for 25 h: %s (%q), %d emails; want expired after hold_expiry, none sent", st, why, srv.Count())
	}
}

// prepare writes files into a temporary folder and runs the commands
// (each a command line whose words naming one of the files become its
// path) against env, failing the test on any error. It returns the
// folder.
func prepare(t *testing.T, env map[string]string, files map[string]string, commands ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range commands {
		args := strings.Fields(c)
		for i, a := range args {
			if _, ok := files[a]; ok {
				args[i] = filepath.Join(dir, a)
			}
		}
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, errOut)
		}
	}
	return dir
}
