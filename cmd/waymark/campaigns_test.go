package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// runWith runs the command line with extra environment.
func runWith(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

const campaignJourney = `rules:
  - name: customer
    from: [awareness, consideration, decision]
    to: retention
    when: ever("order_completed")
tones:
  - tone: empathetic
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
  - tone: friendly
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    exit: stage != "awareness"
    steps:
      - {after: 0h, template: welcome}
      - {after: 48h, template: tips}
  - name: win-back
    trigger: {when: 'ever("order_completed") && days_since("order_completed") > 90'}
    cooldown: 180d
    steps:
      - {after: 0h, template: we-miss-you}
holds:
  - name: open-complaint
    when: count("support_ticket_opened", "30d") > count("support_ticket_closed", "30d")
offers:
  - name: loyal
    when: count("order_completed", "365d") >= 3
    share: 1
    cooldown: 180d
    template: surprise
    valid: 30d
sending:
  frequency_cap: {max: 2, per: 7d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: welcome, subject: "Welcome, {{.Contact.FirstName | default \"friend\"}}", text: "Glad you are here."}
  - {name: tips, subject: "Three tips", text: "Tip one."}
  - {name: we-miss-you, subject: "We miss you", text: "Come back soon.", tones: {empathetic: {subject: "Sorry"}}}
  - {name: surprise, subject: "A thank-you", text: "Your code: {{with .Offer}}{{.Code}}{{end}}"}
`

func TestCampaignsSendExactlyWhatTheJourneySays(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>"}
	dir := t.TempDir()
	day := func(d float64) string {
		return clock.Now().Add(time.Duration(d * 24 * float64(time.Hour))).UTC().Format(time.RFC3339)
	}
	files := map[string]string{
		"contacts.csv": "userId,email,first_name\nann,ann@example.com,Ann\nbo,bo@example.com,Bo\ncy,cy@example.com,Cy\n",
		// bo: three orders, the last 100 days ago (win-back and the loyal
		// offer); cy: an open complaint (held).
		"events.csv": "userId,event,timestamp,revenue\n" +
			"bo,order_completed," + day(-300) + ",10\nbo,order_completed," + day(-200) + ",10\nbo,order_completed," + day(-100) + ",10\n" +
			"cy,support_ticket_opened," + day(-1) + ",\n",
		"journey.yaml": campaignJourney,
	}
	for name, content := range files {
		_ = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	for _, args := range [][]string{{"import", filepath.Join(dir, "contacts.csv")}, {"import", filepath.Join(dir, "events.csv")}, {"apply", "-f", filepath.Join(dir, "journey.yaml")}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	out, errOut, err := runWith(t, env, "tick")
	if err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}
	// By hand: ann (awareness) gets the welcome; bo (a customer, so not in
	// awareness) gets the win-back and the loyal offer; cy's welcome is
	// held by the open complaint.
	want := []string{"ann@example.com: Welcome, Ann", "bo@example.com: A thank-you", "bo@example.com: We miss you"}
	got := received(t, smtp.Messages())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("received:\n%s\nwant:\n%s\n(tick said %s)", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	pool, _ := pgxpool.New(context.Background(), url)
	defer pool.Close()
	var code, reason, tone string
	_ = pool.QueryRow(context.Background(), `SELECT offer_code FROM sends WHERE offer = 'loyal'`).Scan(&code)
	for _, m := range smtp.Messages() {
		if strings.Contains(string(m.Data), "A thank-you") && !strings.Contains(string(m.Data), "Your code: "+code) {
			t.Errorf("the offer email lacks its code %q", code)
		}
		mid := m.Header("Message-ID")
		if len(mid) != 1 || !strings.HasSuffix(mid[0], "@shop.example>") {
			t.Errorf("Message-ID %v", mid)
		}
	}
	_ = pool.QueryRow(context.Background(), `SELECT delayed_reason FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE c.email = 'cy@example.com'`).Scan(&reason)
	if reason != "held: open-complaint" {
		t.Errorf("cy's welcome: %q, want held", reason)
	}
	_ = pool.QueryRow(context.Background(), `SELECT tone FROM sends WHERE template = 'we-miss-you'`).Scan(&tone)
	if tone != "friendly" {
		t.Errorf("win-back tone %q", tone)
	}

	// A second tick sends nothing more.
	if _, _, err := runWith(t, env, "tick"); err != nil {
		t.Fatal(err)
	}
	if n := smtp.Count(); n != 3 {
		t.Fatalf("after a second tick %d messages, want still 3", n)
	}

	// Two days later: ann's second step is due; bo has no more steps; the
	// frequency cap (2 in 7 days) does not touch ann.
	if _, _, err := runWith(t, env, "tick", "--as-of", day(2.1)); err != nil {
		t.Fatal(err)
	}
	got = received(t, smtp.Messages())
	if len(got) != 4 || !contains(got, "ann@example.com: Three tips") {
		t.Fatalf("after two days:\n%s", strings.Join(got, "\n"))
	}
	var status string
	_ = pool.QueryRow(context.Background(), `SELECT status FROM enrolments WHERE sequence = 'welcome' AND contact_id = (SELECT id FROM contacts WHERE email = 'ann@example.com')`).Scan(&status)
	if status != "completed" {
		t.Errorf("ann's welcome enrolment is %q, want completed", status)
	}
}

func received(t *testing.T, msgs []smtptest.Message) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		subj := m.Header("Subject")
		if len(m.To) != 1 || len(subj) != 1 {
			t.Fatalf("message to %v with subjects %v", m.To, subj)
		}
		out = append(out, m.To[0]+": "+subj[0])
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
