package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// A sequence step with `offer:` gives each contact a coupon from the
// offer's pool, shown in the email; the pool's codes are given once each,
// and a contact the pool cannot serve is skipped with the reason.
func TestStepGivesTheOffersCoupon(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "news@shop.example"}
	dir := t.TempDir()
	files := map[string]string{
		"contacts.csv": "userId,email\nann,ann@example.com\nbo,bo@example.com\ncy,cy@example.com\n",
		"journey.yaml": `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: hello, offer: first-order}
offers:
  - name: first-order
    when: 'false'
    template: hello
    valid: 14d
    codes: [WELCOME-A, WELCOME-B]
sending:
  frequency_cap: {max: 0, per: 7d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: hello
    subject: Hello
    text: "{{with .Offer}}Your code: {{.Code}}{{else}}no code{{end}}"
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"import", filepath.Join(dir, "contacts.csv")}, {"apply", "-f", filepath.Join(dir, "journey.yaml")}, {"tick"}, {"tick"}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	var codes []string
	for _, m := range smtp.Messages() {
		body := string(m.Data)
		i := strings.Index(body, "Your code: ")
		if i < 0 {
			t.Fatalf("an email without its code:\n%s", body)
		}
		codes = append(codes, strings.Fields(body[i+len("Your code: "):])[0])
	}
	sort.Strings(codes)
	if strings.Join(codes, ",") != "WELCOME-A,WELCOME-B" {
		t.Fatalf("codes received %v, want each pool code once", codes)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var given, skipped int
	var reason string
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM coupons WHERE offer = 'first-order' AND contact_id IS NOT NULL`).Scan(&given)
	_ = pool.QueryRow(context.Background(), `SELECT count(*), max(delayed_reason) FROM sends WHERE status = 'skipped'`).Scan(&skipped, &reason)
	if given != 2 || skipped != 1 || reason != `offer "first-order": its coupon pool is empty` {
		t.Fatalf("coupons given %d, skipped sends %d (%q)", given, skipped, reason)
	}
	// The codes on the sends are the ones mailed, with the expiry.
	var onSends int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM sends WHERE status = 'sent' AND offer = 'first-order'
		AND offer_code IN ('WELCOME-A', 'WELCOME-B') AND offer_expires > $1::timestamptz + interval '13 days'`, clock.Now()).Scan(&onSends)
	if onSends != 2 {
		t.Fatalf("%d sent sends carry their code and expiry, want 2", onSends)
	}
}
