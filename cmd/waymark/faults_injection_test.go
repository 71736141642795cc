package main

// Header injection, end to end: hostile contact data (email, first name,
// traits a subject uses), a hostile template subject, hostile offer codes,
// through import, apply, rendering, decoration and SMTP to a real server,
// which parses what it received.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

const injectionJourney = `tones:
  - tone: formal
    when: traits.company != nil
  - tone: friendly
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0s, template: hello}
offers:
  - name: thanks
    when: email != ""
    share: 1
    cooldown: 30d
    template: coupon
    codes: [SAVE-1, SAVE-2, SAVE-3, SAVE-4, SAVE-5, SAVE-6, SAVE-7, SAVE-8, SAVE-9, SAVE-10]
sending:
  frequency_cap: {max: 100, per: 1d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: hello
    subject: "Hi {{.Contact.FirstName}} at {{.Contact.Traits.company}}"
    text: "Dear {{.Contact.FirstName}} of {{.Contact.Traits.company}},\nwelcome."
    html: "<p>Dear {{.Contact.FirstName}} of {{.Contact.Traits.company}}</p>"
    tones:
      formal: {subject: "Dear {{.Contact.FirstName}}\r\nBcc: evil@attacker.example\r\nX-Evil: template"}
  - name: coupon
    subject: "{{with .Offer}}{{.Code}}{{end}} for {{.Contact.FirstName}}\nCc: evil@attacker.example"
    text: "Your code: {{with .Offer}}{{.Code}}{{end}}"
`

// hostile values of a contact's first name and company, each trying to
// start a header, add a recipient or smuggle a second SMTP transaction.
var hostileTraits = []struct{ first, company string }{
	{"Ann\r\nBcc: evil@attacker.example", "Acme\nX-Evil: 1\r\nTo: evil@attacker.example"},
	{"Bo\u2028Cc: evil@attacker.example", "\u0085X-Evil: 2\u2029Bcc: evil@attacker.example"},
	{"Cy\r\n.\r\nMAIL FROM:<x@attacker.example>\r\nRCPT TO:<evil@attacker.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n", "\n.\n"},
	{"Di\n.\nRCPT TO:<evil@attacker.example>\n", "Co\r.\rX-Evil: 3"},
	{"=?utf-8?q?=0D=0ABcc:_evil@attacker.example?=", strings.Repeat("word ", 400) + "Bcc: evil@attacker.example"},
	{"Ed\x00\x0b\x1bBcc: evil@attacker.example", "\tX-Evil: 4"},
	{"Flo: Bcc: evil@attacker.example; To: evil@attacker.example", "<evil@attacker.example>, evil@attacker.example"},
}

// hostile email addresses: each must be refused at import.
var hostileEmails = []string{
	"e1@example.com\r\nBcc: evil@attacker.example",
	"e2@example.com, evil@attacker.example",
	"\"e3\" <evil@attacker.example>",
	"e4@example.com\nbcc:evil@attacker.example",
	"\"evil@attacker.example\"@example.com",
	"e6@example.com\u2028Bcc: evil@attacker.example",
	"e7@example.com>\r\nRCPT TO:<evil@attacker.example",
}

func TestFaultHeaderInjectionThroughContactData(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	srv := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", srv.Addr()), "WAYMARK_FROM": "Shop <news@shop.example>",
		"WAYMARK_PUBLIC_URL": "https://shop.example", "WAYMARK_POSTAL_ADDRESS": "1 Main St\r\nBcc: evil@attacker.example"}
	dir := t.TempDir()

	var lines []string
	wantTo := map[string]string{} // address → first name
	for i, h := range hostileTraits {
		email := fmt.Sprintf("h%d@example.com", i+1)
		wantTo[email] = h.first
		b, _ := json.Marshal(map[string]any{"type": "identify", "userId": fmt.Sprintf("h%d", i+1), "messageId": fmt.Sprintf("h%d", i+1),
			"traits": map[string]any{"email": email, "first_name": h.first, "company": h.company}})
		lines = append(lines, string(b))
	}
	for i, e := range hostileEmails {
		b, _ := json.Marshal(map[string]any{"type": "identify", "userId": fmt.Sprintf("e%d", i+1), "messageId": fmt.Sprintf("e%d", i+1),
			"traits": map[string]any{"email": e, "first_name": "E"}})
		lines = append(lines, string(b))
	}
	contacts := filepath.Join(dir, "contacts.jsonl")
	if err := os.WriteFile(contacts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runWith(t, env, "import", contacts)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d lines were rejected", len(hostileEmails))) {
		t.Fatalf("import: %v, want the hostile addresses' %d lines rejected\n%s", err, len(hostileEmails), errOut)
	}
	for i := range hostileEmails {
		line := len(hostileTraits) + i + 1
		if !strings.Contains(errOut, fmt.Sprintf("line %d: traits.email: ", line)) {
			t.Errorf("hostile email %q (line %d) was not refused by name:\n%s", hostileEmails[i], line, errOut)
		}
	}

	// A hostile coupon code is refused when the journey is applied, and
	// nothing of that journey is stored.
	bad := strings.Replace(injectionJourney, "SAVE-10]", "\"SAVE-10\\r\\nBcc: evil@attacker.example\"]", 1)
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runWith(t, env, "apply", "-f", filepath.Join(dir, "bad.yaml")); err == nil || !strings.Contains(errOut+err.Error(), "code") {
		t.Fatalf("apply of a hostile coupon code: err %v\n%s", err, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, "journey.yaml"), []byte(injectionJourney), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runWith(t, env, "apply", "-f", filepath.Join(dir, "journey.yaml")); err != nil {
		t.Fatalf("apply: %v\n%s", err, errOut)
	}
	if _, errOut, err := runWith(t, env, "tick"); err != nil {
		t.Fatalf("tick: %v\n%s", err, errOut)
	}

	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var hostileStored int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM contacts WHERE user_id LIKE 'e%' OR email LIKE '%attacker%'`).Scan(&hostileStored)
	if hostileStored != 0 {
		t.Errorf("%d contacts stored from hostile email lines", hostileStored)
	}

	// Every contact gets the welcome and the coupon: two messages each,
	// each to its own address only.
	msgs := srv.Messages()
	if want := 2 * len(hostileTraits); len(msgs) != want {
		t.Errorf("the server received %d messages, want %d; sends %v", len(msgs), want, sendCounts(t, pool))
	}
	perTo := map[string]int{}
	for _, m := range msgs {
		checkOneRecipient(t, m, wantTo)
		if len(m.To) == 1 {
			perTo[m.To[0]]++
		}
	}
	for addr := range wantTo {
		if perTo[addr] != 2 {
			t.Errorf("%s received %d messages, want 2", addr, perTo[addr])
		}
	}
}

// checkOneRecipient checks that m went to one known address only, with
// one of each address and identity field, no Cc, Bcc or injected field,
// a one-line subject, and a MIME structure that parses.
func checkOneRecipient(t *testing.T, m smtptest.Message, known map[string]string) {
	t.Helper()
	if len(m.To) != 1 {
		t.Errorf("envelope recipients %q, want one", m.To)
		return
	}
	rcpt := m.To[0]
	if _, ok := known[rcpt]; !ok {
		t.Errorf("a message to %q, who is not a contact", rcpt)
	}
	msg, err := m.Parse()
	if err != nil {
		t.Errorf("message to %s does not parse: %v\n%s", rcpt, err, m.Data)
		return
	}
	counts := map[string]int{}
	for _, n := range m.HeaderNames() {
		counts[strings.ToLower(n)]++
	}
	for _, name := range []string{"from", "to", "subject", "message-id", "date", "mime-version", "list-unsubscribe", "list-unsubscribe-post"} {
		if counts[name] != 1 {
			t.Errorf("message to %s: %d %s fields, want 1\n%s", rcpt, counts[name], name, m.Data)
		}
	}
	allowed := map[string]bool{"from": true, "to": true, "subject": true, "message-id": true, "date": true, "mime-version": true,
		"content-type": true, "content-transfer-encoding": true, "list-unsubscribe": true, "list-unsubscribe-post": true}
	for name := range counts {
		if !allowed[name] && !strings.HasPrefix(name, "x-waymark") {
			t.Errorf("message to %s has an unexpected field %q\n%s", rcpt, name, m.Data)
		}
	}
	to, err := mail.ParseAddressList(msg.Header.Get("To"))
	if err != nil || len(to) != 1 || to[0].Address != rcpt {
		t.Errorf("message to %s: To field %q (%v)", rcpt, msg.Header.Get("To"), err)
	}
	subject, err := m.DecodedHeader("Subject")
	if err != nil || strings.ContainsAny(subject, "\r\n\x00\u2028\u2029\u0085") {
		t.Errorf("message to %s: subject %q (%v) is not one line", rcpt, subject, err)
	}
	// (Hostile text in the body, "Bcc: …" or "RCPT TO:<…>" at the start
	// of a line, is only text there: what matters is that it did not end
	// the message early, which the count of messages and recipients
	// shows.)
	if _, err := m.Parts(); err != nil {
		t.Errorf("message to %s is not valid MIME: %v", rcpt, err)
	}
}
