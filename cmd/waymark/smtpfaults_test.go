package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

// Each kind of SMTP failure ends in the state DESIGN.md defines, and the
// healthy recipients' mail keeps flowing past it.
func TestSMTPFailuresEndInTheirStates(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	srv := smtptest.Start(t,
		smtptest.FailRcpt(func(rcpt string, attempt int) *smtp.SMTPError {
			switch {
			case strings.HasPrefix(rcpt, "greylisted@") && attempt <= 2:
				return smtptest.SMTPError(451, "4.7.1", "greylisted, try again later")
			case strings.HasPrefix(rcpt, "gone@"):
				return smtptest.SMTPError(550, "5.1.1", "no such user")
			}
			return nil
		}),
		smtptest.FailData(func(m smtptest.Message, attempt int) *smtp.SMTPError {
			if strings.HasPrefix(m.To[0], "spam@") {
				return smtptest.SMTPError(554, "5.7.1", "message refused as spam")
			}
			return nil
		}),
		smtptest.DropAfterDataIf(func(m smtptest.Message, attempt int) bool { return strings.HasPrefix(m.To[0], "dropped@") }),
	)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none&pool=2", srv.Addr()), "WAYMARK_FROM": "shop@shop.example"}
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("userId,email\n")
	for _, who := range []string{"greylisted", "gone", "spam", "dropped", "ok1", "ok2", "ok3"} {
		fmt.Fprintf(&csv, "%s,%s@example.com\n", who, who)
	}
	_ = os.WriteFile(filepath.Join(dir, "c.csv"), []byte(csv.String()), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "j.yaml"), []byte(`sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: hi}
      - {after: 1d, template: again}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
  frequency_cap: {max: 0, per: 7d}
templates:
  - {name: hi, subject: Hi, text: Hello}
  - {name: again, subject: Again, text: Hello again}
`), 0o644)
	for _, args := range [][]string{{"import", filepath.Join(dir, "c.csv")}, {"apply", "-f", filepath.Join(dir, "j.yaml")}, {"tick"}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	pool, _ := pgxpool.New(context.Background(), url)
	defer pool.Close()
	state := func(who string, step int) (status string, attempts int, response string) {
		t.Helper()
		_ = pool.QueryRow(context.Background(), `SELECT s.status, s.attempts, coalesce(s.smtp_response, '') FROM sends s JOIN contacts c ON c.id = s.contact_id
			WHERE c.email = $1 AND s.step = $2`, who+"@example.com", step).Scan(&status, &attempts, &response)
		return
	}
	check := func(who string, step int, wantStatus string, wantAttempts int, wantResponse string) {
		t.Helper()
		st, at, resp := state(who, step)
		if st != wantStatus || at != wantAttempts || !strings.Contains(resp, wantResponse) {
			t.Errorf("%s step %d: %s after %d attempts (%q); want %s after %d (…%s…)", who, step, st, at, resp, wantStatus, wantAttempts, wantResponse)
		}
	}
	check("ok1", 0, "sent", 1, "sent 250")
	check("ok3", 0, "sent", 1, "sent 250")
	check("greylisted", 0, "queued", 1, "451")
	check("gone", 0, "failed", 1, "550 5.1.1")
	check("spam", 0, "failed", 1, "554 5.7.1")
	check("dropped", 0, "unknown", 1, "")
	var suppressed []string
	rows, _ := pool.Query(context.Background(), `SELECT email || ':' || reason FROM suppressions ORDER BY email`)
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		suppressed = append(suppressed, s)
	}
	rows.Close()
	if strings.Join(suppressed, ",") != "gone@example.com:hard_bounce" {
		t.Errorf("suppressions %v, want only the hard bounce", suppressed)
	}

	// Later ticks: the greylisted address is retried with back-off and
	// delivered once; nothing else is sent again.
	for _, later := range []time.Duration{10 * time.Minute, 2 * time.Hour} {
		at := clock.Now().Add(later).UTC().Format(time.RFC3339)
		if _, errOut, err := runWith(t, env, "tick", "--as-of", at); err != nil {
			t.Fatalf("tick: %v\n%s", err, errOut)
		}
	}
	check("greylisted", 0, "sent", 3, "sent 250")
	// The day after: second steps go out, but not to the hard bounce.
	// (Within a day of their due time: later, sending: late_expiry
	// expires them.)
	if _, _, err := runWith(t, env, "tick", "--as-of", clock.Now().Add(25*time.Hour).UTC().Format(time.RFC3339)); err != nil {
		t.Fatal(err)
	}
	check("gone", 1, "suppressed", 0, "")
	check("ok2", 1, "sent", 1, "sent 250")
	got := map[string]int{}
	for _, m := range srv.Messages() {
		got[m.Header("Message-ID")[0]]++
	}
	for id, n := range got {
		if n > 1 {
			t.Errorf("%s received %d times", id, n)
		}
	}
}
