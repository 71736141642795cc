package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/config"
	"github.com/waymark/waymark/internal/demo"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/rule"
)

// The demo, on a smaller population and a faster clock: everything it
// promises is checked against the database and the capture server.
func TestDemo(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	var cfg config.Config
	if err := cfg.Load(func(k string) string {
		return map[string]string{"DATABASE_URL": url, "WAYMARK_HTTP_ADDR": "127.0.0.1:0"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	e := &env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	began := time.Now()
	res, err := runDemo(ctx, e, &cfg, demoOptions{Contacts: 220, History: 155 * 24 * time.Hour, Duration: 2 * time.Second, Seed: 7, Exit: true, HTTPExplicit: true})
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	t.Logf("the demo took %s:\n%s", time.Since(began).Round(time.Millisecond), out.String())
	if strings.Contains(errb.String(), "level=ERROR") {
		t.Logf("logged:\n%s", errb.String())
	}

	// What it prints.
	printed := out.String()
	for _, want := range []string{
		"ingestion   http://" + res.Addr + "/v1/batch  (write key " + cfg.WriteKey + ")",
		"API key     " + res.APIKey,
		"captured by the built-in SMTP server on " + res.Capture.Addr(),
		"✓ contacts in every stage  ✓ all four tones used  ✓ a win-back sent",
		"✓ a surprise offer sent",
		"✓ a broadcast sent",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("the output lacks %q", want)
		}
	}

	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := store.New(pool)
	if _, err := st.Authenticate(ctx, res.APIKey); err != nil {
		t.Errorf("the printed API key does not authenticate: %v", err)
	}
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}

	// Contacts in every stage.
	stages, err := st.StageCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"awareness", "consideration", "decision", "retention", "advocacy"} {
		if stages[rule.Stage(s)] == 0 {
			t.Errorf("no contact in %s: %v", s, stages)
		}
	}
	// All four tones used in emails actually sent.
	for _, tone := range []string{"friendly", "formal", "empathetic", "celebratory"} {
		if n := count(`SELECT count(*) FROM sends WHERE status = 'sent' AND tone = $1`, tone); n == 0 {
			t.Errorf("no email sent in the %s tone", tone)
		}
	}
	// The monthly journal, a broadcast to vip customers in retention and
	// advocacy: sent on the 1st, at 09:00 in each reader's zone or
	// later (quiet hours, the cap, a pass that came late, the test's
	// winner), never twice to a reader in a run; its A/B test decided,
	// with the rule recorded.
	if n := count(`SELECT count(*) FROM sends WHERE status = 'sent' AND broadcast = 'monthly-journal'`); n == 0 {
		t.Errorf("no broadcast email sent")
	}
	if n := count(`SELECT count(*) FROM broadcast_runs WHERE broadcast = 'monthly-journal' AND decision->>'Rule' LIKE 'the variant whose recipients most often clicked%'`); n == 0 {
		t.Errorf("no A/B test of the journal was decided")
	}
	if n := count(`SELECT count(*) FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE s.broadcast = 'monthly-journal' AND s.status = 'sent'
		AND s.sent_at < s.planned_at`); n != 0 {
		t.Errorf("%d journal emails went out before 09:00 in their reader's zone", n)
	}
	// A win-back, sent more than 120 simulated days after the contact's
	// last order before it: the clock the sender ran on is the simulated
	// one, not the wall clock.
	if n := count(`SELECT count(*) FROM sends WHERE status = 'sent' AND sequence = 'win-back' AND template = 'we-miss-you'`); n == 0 {
		t.Errorf("no win-back email sent")
	}
	if n := count(`SELECT count(*) FROM sends s WHERE s.status = 'sent' AND s.sequence = 'win-back' AND NOT (
		SELECT max(e.occurred_at) FROM events e WHERE e.contact_id = s.contact_id AND e.name = 'order_completed' AND e.occurred_at <= s.sent_at
	) < s.sent_at - interval '120 days'`); n != 0 {
		t.Errorf("%d win-back emails went to customers whose last order was not 120 days old at the time", n)
	}
	// Cart emails went out, and none to a contact who had ordered after
	// the cart (the sequence starts at the cart's time, so the order
	// reaches its goal: DESIGN.md, "How data flows").
	if n := count(`SELECT count(*) FROM sends WHERE status = 'sent' AND sequence = 'cart-reminder'`); n == 0 {
		t.Errorf("no cart email sent")
	}
	if n := count(`SELECT count(*) FROM sends s WHERE s.status = 'sent' AND s.sequence = 'cart-reminder' AND EXISTS (
		SELECT 1 FROM events o WHERE o.contact_id = s.contact_id AND o.name = 'order_completed' AND o.occurred_at <= s.sent_at
		  AND o.occurred_at > (SELECT max(c.occurred_at) FROM events c WHERE c.contact_id = s.contact_id AND c.name = 'cart_updated' AND c.occurred_at <= s.sent_at))`); n != 0 {
		t.Errorf("%d cart emails went to contacts who had ordered after their cart", n)
	}
	// One address, one email: some browsers signed up again as guests
	// with their address in capitals; no step went to both contacts, and
	// the second's was skipped with the reason.
	if n := count(`SELECT count(*) FROM sends a JOIN sends b ON lower(b.recipient) = lower(a.recipient) AND b.contact_id <> a.contact_id
		AND b.sequence = a.sequence AND b.step = a.step AND b.status = 'sent' WHERE a.status = 'sent' AND a.enrolment_id IS NOT NULL`); n != 0 {
		t.Errorf("%d emails went to an address that got the same step as another contact", n)
	}
	if n := count(`SELECT count(*) FROM sends WHERE status = 'skipped' AND delayed_reason LIKE 'one address, one email:%'`); n == 0 {
		t.Errorf("no step was skipped for a second contact with the same address (the demo's guest sign-ups)")
	}
	// A surprise offer, with its generated code in the email received.
	var code string
	if err := pool.QueryRow(ctx, `SELECT offer_code FROM sends WHERE status = 'sent' AND offer = 'surprise-thank-you' ORDER BY id LIMIT 1`).Scan(&code); err != nil {
		t.Fatalf("no surprise offer sent: %v", err)
	}
	if !strings.HasPrefix(code, "THANKS-") {
		t.Errorf("surprise code %q lacks the THANKS- prefix", code)
	}
	// Every email sent was received by the capture server, once.
	sent := count(`SELECT count(*) FROM sends WHERE status = 'sent'`)
	if sent < 100 || res.Capture.Received() != sent || res.Final.Sent != sent {
		t.Errorf("sent %d (the demo said %d), the capture server received %d", sent, res.Final.Sent, res.Capture.Received())
	}
	ids := map[string]bool{}
	foundCode := false
	for _, m := range res.Capture.List(0, 0) {
		if ids[m.MessageID] {
			t.Errorf("message %s received twice", m.MessageID)
		}
		ids[m.MessageID] = true
		if strings.Contains(m.Text, code) && strings.Contains(m.HTML, code) {
			foundCode = true
		}
		if m.Subject == "" || m.Text == "" || m.ParseError != "" {
			t.Errorf("message %d: subject %q, %d bytes of text, parse error %q", m.ID, m.Subject, len(m.Text), m.ParseError)
		}
	}
	if !foundCode {
		t.Errorf("no captured email carries the surprise code %s", code)
	}
	rows, err := pool.Query(ctx, `SELECT message_id FROM sends WHERE status = 'sent'`)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		if !ids["<"+id+"@fernwoodsupply.example>"] {
			missing++
		}
	}
	rows.Close()
	if missing > 0 {
		t.Errorf("%d sent emails are not among the captured ones (ids like %v)", missing, firstKey(ids))
	}

	// The history is simulated honestly: events span the simulated
	// months, emails went out across them, and no email went to a
	// customer while their complaint was open (the hold).
	if n := count(`SELECT count(*) FROM events WHERE occurred_at < $1::timestamptz - interval '150 days'`, clock.Now()); n == 0 {
		t.Errorf("no event is older than 150 days: the history was not simulated")
	}
	if n := count(`SELECT count(*) FROM sends WHERE status = 'sent' AND sent_at < $1::timestamptz - interval '100 days'`, clock.Now()); n == 0 {
		t.Errorf("no email went out in the simulated past")
	}
	if n := count(`SELECT count(DISTINCT contact_id) FROM events WHERE name = 'complaint_opened'`); n == 0 {
		t.Errorf("no customer complained")
	}
	if n := count(`SELECT count(*) FROM sends s JOIN events o ON o.contact_id = s.contact_id AND o.name = 'complaint_opened'
		WHERE s.status = 'sent' AND o.occurred_at <= s.sent_at AND o.occurred_at > s.sent_at - interval '60 days'
		  AND NOT EXISTS (SELECT 1 FROM events r WHERE r.contact_id = s.contact_id AND r.name = 'complaint_resolved'
		                  AND r.occurred_at >= o.occurred_at AND r.occurred_at <= s.sent_at)`); n != 0 {
		t.Errorf("%d emails went to customers with an open complaint", n)
	}
	// Readers opened and clicked through the real tracking links, as
	// people (a browser, hours after sending), and nobody got email after
	// unsubscribing.
	if n := count(`SELECT count(*) FROM events WHERE name = 'email_opened'`); n == 0 {
		t.Errorf("no email was opened")
	}
	if n := count(`SELECT count(*) FROM events WHERE name = 'email_clicked'`); n == 0 {
		t.Errorf("no link was clicked")
	}
	if n := count(`SELECT count(*) FROM events WHERE name LIKE 'email_%_machine'`); n != 0 {
		t.Errorf("%d opens or clicks were taken for a machine's", n)
	}
	if n := count(`SELECT count(*) FROM sends s JOIN events u ON u.contact_id = s.contact_id AND u.name = 'unsubscribed'
		WHERE s.status = 'sent' AND s.sent_at > u.occurred_at`); n != 0 {
		t.Errorf("%d emails went to contacts after they unsubscribed", n)
	}
	if n := count(`SELECT count(*) FROM transitions t JOIN contacts c ON c.id = t.contact_id WHERE t.at < c.created_at`); n != 0 {
		t.Errorf("%d stage moves happened before their contact existed", n)
	}
	// The dashboard's figures (and /api/v1/stats) count the whole history
	// once it has played, not at the refresher's next turn.
	if inStats, sent := count(`SELECT coalesce(sum(sent), 0) FROM stats_email`), count(`SELECT count(*) FROM sends WHERE status = 'sent'`); inStats != sent {
		t.Errorf("the dashboard's figures count %d emails sent, the database %d", inStats, sent)
	}
	if inStats, moves := count(`SELECT coalesce(sum(n), 0) FROM stats_moves`), count(`SELECT count(*) FROM transitions`); inStats != moves {
		t.Errorf("the dashboard's figures count %d stage moves, the database %d", inStats, moves)
	}

	// What marketing earned (issue 21), as the dashboard's Reports page
	// reads it once the history has played: orders credited to the emails
	// people opened or clicked, revenue per tone, and the surprise offer's
	// drawn customers against its holdout.
	day := clock.Now().UTC().Truncate(24 * time.Hour)
	period := report.Period{From: day.AddDate(0, 0, -200), To: day.AddDate(0, 0, 1)}
	credited := count(`SELECT count(*) FROM conversions WHERE send_id IS NOT NULL`)
	if credited == 0 || count(`SELECT count(*) FROM conversions`) != count(`SELECT count(*) FROM events WHERE name = 'order_completed'`) {
		t.Errorf("%d orders credited to an email; %d conversions for %d orders", credited,
			count(`SELECT count(*) FROM conversions`), count(`SELECT count(*) FROM events WHERE name = 'order_completed'`))
	}
	byTone, err := st.Report(ctx, report.ByTone, period)
	if err != nil {
		t.Fatal(err)
	}
	earning := 0
	for _, r := range byTone.Rows {
		if r.Revenue > 0 {
			earning++
		}
	}
	if earning < 2 || byTone.Total.Conversions != credited {
		t.Errorf("revenue per tone: %d tones earned, %d conversions reported, %d credited: %+v", earning, byTone.Total.Conversions, credited, byTone.Rows)
	}
	holdouts, err := st.Holdouts(ctx, period)
	if err != nil {
		t.Fatal(err)
	}
	var surprise *report.Holdout
	for i := range holdouts {
		if holdouts[i].Offer == "surprise-thank-you" {
			surprise = &holdouts[i]
		}
	}
	for _, r := range byTone.Rows {
		t.Logf("tone %s: %d sent, %d conversions, revenue %.2f", r.Key, r.Sent, r.Conversions, r.Revenue)
	}
	if surprise != nil {
		t.Logf("surprise offer: drawn %d (%d converted), holdout %d (%d converted)", surprise.Treatment.N, surprise.Treatment.Converted, surprise.Control.N, surprise.Control.Converted)
	}
	if surprise == nil || surprise.Treatment.N == 0 || surprise.Control.N == 0 ||
		surprise.Treatment.N+surprise.Control.N != count(`SELECT count(*) FROM offer_draws WHERE offer = 'surprise-thank-you'`) {
		t.Errorf("the surprise offer's holdout comparison: %+v", surprise)
	}
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// A database that already has contacts is not the demo's to fill.
func TestDemoRefusesADatabaseInUse(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	csv := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(csv, []byte("userId,email\nann,ann@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runWaymark(t, url, "import", csv); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	_, _, err := runWaymark(t, url, "demo", "--exit")
	if err == nil || !strings.Contains(err.Error(), "already has 1 contacts") || !strings.Contains(err.Error(), "unset DATABASE_URL") {
		t.Errorf("demo on a database in use: %v", err)
	}
}

// Bad flags are refused before anything starts.
func TestDemoFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--days", "90"}, "--days 90: use 150 to 3650"},
		{[]string{"--contacts", "3"}, "--contacts 3: use 12 to 1,000,000"},
		{[]string{"--duration", "-1s"}, "must not be negative"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, _, err := runWaymark(t, "", append([]string{"demo"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("demo %v: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// The example journey the demo applies (embedded in the binary) has every
// part DESIGN.md's journey has, and is the same file as examples/.
func TestDemoJourney(t *testing.T) {
	t.Parallel()
	j, name, err := demo.LoadJourney("")
	if err != nil {
		t.Fatal(err)
	}
	disk, err := journey.Load("../../examples/journey.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if name != "examples/journey.yaml" || len(j.Templates) != len(disk.Templates) || len(j.Sequences) != len(disk.Sequences) {
		t.Errorf("the embedded journey (%s) differs from examples/journey.yaml", name)
	}
	trig := map[string]string{}
	for _, s := range j.Sequences {
		trig[s.Name] = string(s.Trigger.Kind)
		if s.Trigger.Kind == campaigns.OnRule {
			trig[s.Name] += ": " + s.Trigger.When
		}
	}
	want := map[string]string{
		"welcome":       "enter_stage",
		"cart-reminder": "event",
		"post-purchase": "enter_stage",
		"advocacy":      "enter_stage",
		"win-back":      `when: ever("order_completed") && days_since("order_completed") > 120`,
		"birthday":      `when: days_to_anniversary("birthday") == 0`,
	}
	for n, w := range want {
		if trig[n] != w {
			t.Errorf("sequence %s: trigger %q, want %q", n, trig[n], w)
		}
	}
	for _, s := range j.Sequences {
		if s.Name == "cart-reminder" && (s.Goal == "" || s.Trigger.Event != "cart_updated" || s.Cooldown != 72*time.Hour) {
			t.Errorf("cart reminder: %+v", s)
		}
	}
	if len(j.Holds) != 1 || !strings.Contains(j.Holds[0].When, "complaint_opened") {
		t.Errorf("holds: %+v", j.Holds)
	}
	offers := map[string]campaigns.Offer{}
	for _, o := range j.Offers {
		offers[o.Name] = o
	}
	if o := offers["surprise-thank-you"]; o.Share != 0.3 || o.Cooldown != 180*24*time.Hour || o.Template != "surprise" || o.Prefix != "THANKS-" {
		t.Errorf("surprise offer: %+v", o)
	}
	if o := offers["come-back"]; len(o.Codes) != 24 || o.Share != 1 {
		t.Errorf("come-back offer: %d codes, share %v", len(o.Codes), o.Share)
	}
	if s := j.Settings; s.CapMax != 3 || s.CapPer != 7*24*time.Hour || s.QuietStart != 21*60 || s.QuietEnd != 8*60 || s.DefaultTimezone != "America/Los_Angeles" {
		t.Errorf("sending: %+v", s)
	}
}
