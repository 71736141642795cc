package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/bounce"
	"github.com/waymark/waymark/internal/bounce/bouncetest"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
)

// webhooksJourney mails everyone who signs up at once and again two days
// later (so each address has a send on the wire and one queued), and
// moves a contact a relay reported a bounce for: email_bounced reaches
// the rules.
const webhooksJourney = `rules:
  - name: bounced
    from: [awareness]
    to: consideration
    when: ever("email_bounced")
sequences:
  - name: welcome
    trigger: {event: signed_up}
    steps:
      - {after: 0h, template: welcome}
      - {after: 48h, template: tips}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: welcome, subject: "Welcome", text: "Hello."}
  - {name: tips, subject: "Tips", text: "Some tips."}
`

const (
	sesTopic     = "arn:aws:sns:us-west-2:123456789012:MyTopic"
	mailgunKey   = "key-mailgun-test-signing"
	postmarkUser = "postmark"
	postmarkPass = "pm-secret-1"
)

// hooks is a running serve with every provider's webhook on, and the
// relays' stand-ins.
type hooks struct {
	t    *testing.T
	base string
	pool *pgxpool.Pool
	smtp *smtptest.Server
	sns  *bouncetest.SNS
	sg   bouncetest.SendGridKey
}

func startHooks(t *testing.T, people ...string) *hooks {
	t.Helper()
	return startHooksWith(t, nil, people...)
}

// startHooksWith is startHooks with more settings.
func startHooksWith(t *testing.T, settings map[string]string, people ...string) *hooks {
	t.Helper()
	h := &hooks{t: t, smtp: smtptest.Start(t), sns: bouncetest.NewSNS(t), sg: bouncetest.NewSendGridKey(t)}
	env := map[string]string{
		"WAYMARK_SMTP_URL": "smtp://" + h.smtp.Addr() + "?tls=none", "WAYMARK_FROM": "shop@shop.example", "WAYMARK_CRON": "@every 1h",
		"WAYMARK_SES_TOPIC_ARNS": sesTopic, "WAYMARK_POSTMARK_WEBHOOK_AUTH": postmarkUser + ":" + postmarkPass,
		"WAYMARK_SENDGRID_WEBHOOK_KEY": h.sg.Public, "WAYMARK_MAILGUN_SIGNING_KEY": mailgunKey,
		"WAYMARK_SOFT_BOUNCE_LIMIT": "2", "WAYMARK_SOFT_BOUNCE_WINDOW": "30d",
	}
	maps.Copy(env, settings)
	h.base, h.pool = startServeOpts(t, webhooksJourney, env, serveOptions{SNS: h.sns.Verifier()})
	for _, email := range people {
		user := strings.Split(email, "@")[0]
		if code := postJSON(t, h.base, "/v1/identify", `{"userId":"`+user+`","traits":{"email":"`+email+`"}}`); code != 200 {
			t.Fatalf("identify %s: %d", email, code)
		}
		if code := postJSON(t, h.base, "/v1/track", `{"userId":"`+user+`","event":"signed_up"}`); code != 200 {
			t.Fatalf("track %s: %d", email, code)
		}
	}
	// Each has its welcome on the wire and its tips queued.
	h.smtp.WaitFor(len(people), 20*time.Second)
	h.waitFor(fmt.Sprint(len(people)), `SELECT count(*)::text FROM sends WHERE template = 'tips' AND status = 'queued'`)
	return h
}

// waitFor waits until sql answers want.
func (h *hooks) waitFor(want, sql string, args ...any) {
	h.t.Helper()
	var got string
	for deadline := time.Now().Add(15 * time.Second); ; {
		got = one(h.t, h.pool, sql, args...)
		if got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		h.t.Fatalf("%s\ngot  %s\nwant %s", sql, got, want)
	}
}

// messageID is the Message-ID of the welcome email the SMTP server got
// for email.
func (h *hooks) messageID(email string) string {
	h.t.Helper()
	for _, m := range h.smtp.Messages() {
		if len(m.To) == 1 && m.To[0] == email {
			if id := m.Header("Message-Id"); len(id) == 1 {
				return id[0]
			}
		}
	}
	h.t.Fatalf("no email to %s", email)
	return ""
}

// post sends body to path with headers, and returns the status and body.
func (h *hooks) post(path string, body []byte, header map[string]string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if k == "basic" {
			u, p, _ := strings.Cut(v, ":")
			req.SetBasicAuth(u, p)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expect posts and checks the status and that the answer holds want.
func (h *hooks) expect(what, path string, body []byte, header map[string]string, status int, want string) {
	h.t.Helper()
	code, got := h.post(path, body, header)
	if code != status || !strings.Contains(got, want) {
		h.t.Fatalf("%s: %d %s, want %d with %s", what, code, strings.TrimSpace(got), status, want)
	}
}

// state is what the reports changed, per address: its suppression, its
// queued (now cancelled) tips email, its report events with their type
// and send, one line each.
func (h *hooks) state(email string) string {
	h.t.Helper()
	return one(h.t, h.pool, `
SELECT coalesce((SELECT reason FROM suppressions WHERE email = $1), 'not suppressed') || ' | tips ' ||
       (SELECT s.status || coalesce(' ' || s.delayed_reason, '') FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE c.email = $1 AND s.template = 'tips') || ' | ' ||
       coalesce((SELECT string_agg(e.name || coalesce('/' || (e.properties->>'type'), '') || '@' || (e.properties->>'provider') ||
                        CASE WHEN e.properties ? 'send_id' THEN ' send ' || (e.properties->>'template') ELSE '' END, ', ' ORDER BY e.name, e.properties->>'type')
                 FROM events e JOIN contacts c ON c.id = e.contact_id
                 WHERE c.email = $1 AND e.name IN ('email_bounced', 'email_complained', 'email_delivered')), 'no events')`, email)
}

// counts is how many reports and report events are stored: refused
// requests must leave it as it was.
func (h *hooks) counts() string {
	h.t.Helper()
	return one(h.t, h.pool, `SELECT (SELECT count(*) FROM delivery_reports) || ' reports, ' ||
		(SELECT count(*) FROM events WHERE name IN ('email_bounced', 'email_complained', 'email_delivered')) || ' events, ' ||
		(SELECT count(*) FROM suppressions) || ' suppressions'`)
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "bounce", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snsNotification wraps an SES notification in the documented SNS
// notification, as SNS would post it, signed with version.
func (h *hooks) snsNotification(sesMessage, messageID, version string) []byte {
	h.t.Helper()
	m, err := bounce.ParseSNS([]byte(readFixture(h.t, "sns_notification.json")))
	if err != nil {
		h.t.Fatal(err)
	}
	m.Message, m.MessageID, m.Subject = sesMessage, messageID, nil
	h.sns.Sign(h.t, m, version)
	b, _ := json.Marshal(m)
	return b
}

// Amazon SES through SNS: the subscription is confirmed; the documented
// bounce, complaint and delivery notifications are recorded once each,
// tied to the send whose Message-ID they carry (or to the address's
// contact); forged, unsigned, foreign-topic and foreign-certificate
// messages are refused and change nothing.
func TestSESWebhook(t *testing.T) {
	t.Parallel()
	h := startHooks(t, "jane@example.com", "richard@example.com", "mary@example.com")
	const path = "/v1/webhooks/ses"

	sub, _ := bounce.ParseSNS([]byte(readFixture(t, "sns_subscription_confirmation.json")))
	h.sns.Sign(t, sub, "1")
	b, _ := json.Marshal(sub)
	h.expect("subscription confirmation", path, b, nil, 200, `"success":true`)
	if got := h.sns.Confirmations(); len(got) != 1 || got[0] != sub.SubscribeURL {
		t.Fatalf("confirmations %q", got)
	}

	// The documented bounce, its Message-ID Waymark's welcome to Jane.
	bounceMsg := strings.ReplaceAll(readFixture(t, "ses_bounce_dsn.json"), "custom-message-ID", h.messageID("jane@example.com"))
	signed := h.snsNotification(bounceMsg, "b1f3c0de-0000-4000-8000-000000000001", "1")
	h.expect("bounce", path, signed, nil, 200, `"recorded":1`)
	h.expect("the same bounce again", path, signed, nil, 200, `"duplicates":1`)
	// Delivered again under another SNS message id (a second
	// subscription): SES's feedback id keeps it one report.
	h.expect("the same bounce through another subscription", path, h.snsNotification(bounceMsg, "b1f3c0de-0000-4000-8000-000000000002", "2"), nil, 200, `"duplicates":1`)
	h.expect("complaint", path, h.snsNotification(readFixture(t, "ses_complaint.json"), "c0c0c0c0-0000-4000-8000-000000000003", "2"), nil, 200, `"recorded":1`)
	h.expect("delivery", path, h.snsNotification(readFixture(t, "ses_delivery.json"), "d0d0d0d0-0000-4000-8000-000000000004", "1"), nil, 200, `"recorded":1`)

	before := h.counts()
	maryComplaint := strings.ReplaceAll(readFixture(t, "ses_complaint.json"), `"emailAddress":"richard@example.com"`, `"emailAddress":"mary@example.com"`)
	forged := h.snsNotification(readFixture(t, "ses_complaint.json"), "f0f0f0f0-0000-4000-8000-000000000005", "2")
	forged = bytes.Replace(forged, []byte(`\"emailAddress\":\"richard@example.com\"`), []byte(`\"emailAddress\":\"mary@example.com\"`), 1)
	if !bytes.Contains(forged, []byte("mary@")) {
		t.Fatal("the forgery did not change the message")
	}
	h.expect("forged (changed after signing)", path, forged, nil, 403, "signature does not verify")
	m, _ := bounce.ParseSNS(h.snsNotification(maryComplaint, "f0f0f0f0-0000-4000-8000-000000000006", "2"))
	m.Signature, m.SignatureVersion = "", ""
	b, _ = json.Marshal(m)
	h.expect("unsigned", path, b, nil, 401, "unsigned")
	m, _ = bounce.ParseSNS(h.snsNotification(maryComplaint, "f0f0f0f0-0000-4000-8000-000000000007", "2"))
	m.TopicArn = "arn:aws:sns:us-west-2:666666666666:NotYours"
	h.sns.Sign(t, m, "2")
	b, _ = json.Marshal(m)
	h.expect("another account's topic", path, b, nil, 403, "is not one of WAYMARK_SES_TOPIC_ARNS")
	m.TopicArn, m.SigningCertURL = sesTopic, "https://certs.example.net/SimpleNotificationService-x.pem"
	h.sns.Sign(t, m, "2")
	b, _ = json.Marshal(m)
	h.expect("a certificate from elsewhere", path, b, nil, 403, "not an https URL on sns.<region>.amazonaws.com")
	h.expect("not JSON", path, []byte("Type=Notification"), nil, 401, "unsigned")
	if after := h.counts(); after != before {
		t.Fatalf("refused requests changed %s into %s", before, after)
	}

	for email, want := range map[string]string{
		"jane@example.com":    "hard_bounce | tips cancelled hard_bounce | email_bounced/hard@ses send welcome, email_delivered@ses",
		"richard@example.com": "complaint | tips cancelled complaint | email_complained@ses",
		"mary@example.com":    "not suppressed | tips queued | no events",
	} {
		if got := h.state(email); got != want {
			t.Errorf("%s: %s\nwant %s", email, got, want)
		}
	}
	// The bounce reached the rules at once.
	h.waitFor("consideration", `SELECT stage FROM contacts WHERE email = 'jane@example.com'`)
	h.waitFor("1", `SELECT count(*)::text FROM transitions t JOIN contacts c ON c.id = t.contact_id WHERE c.email = 'jane@example.com' AND t.rule = 'bounced'`)
}

// Postmark: HTTP Basic credentials required (401 without, 403 wrong);
// the documented bounce, spam complaint and delivery recorded once.
func TestPostmarkWebhook(t *testing.T) {
	t.Parallel()
	h := startHooks(t, "john@example.com")
	const path = "/v1/webhooks/postmark"
	auth := map[string]string{"basic": postmarkUser + ":" + postmarkPass}
	bounceBody := []byte(readFixture(t, "postmark_bounce.json"))
	h.expect("no credentials", path, bounceBody, nil, 401, "no HTTP Basic credentials")
	h.expect("wrong password", path, bounceBody, map[string]string{"basic": postmarkUser + ":guess"}, 403, "wrong HTTP Basic credentials")
	if got := h.counts(); got != "0 reports, 0 events, 0 suppressions" {
		t.Fatalf("refused requests stored %s", got)
	}
	h.expect("bounce", path, bounceBody, auth, 200, `"recorded":1`)
	h.expect("bounce again", path, bounceBody, auth, 200, `"duplicates":1`)
	h.expect("spam complaint", path, []byte(readFixture(t, "postmark_spam_complaint.json")), auth, 200, `"recorded":1`)
	h.expect("delivery", path, []byte(readFixture(t, "postmark_delivery.json")), auth, 200, `"recorded":1`)
	// Postmark echoes its own message id, not the email's: the reports go
	// to the address's contact. (A complaint after the hard bounce leaves
	// the hard bounce as the reason.)
	if got, want := h.state("john@example.com"), "hard_bounce | tips cancelled hard_bounce | email_bounced/hard@postmark, email_complained@postmark, email_delivered@postmark"; got != want {
		t.Errorf("john: %s\nwant %s", got, want)
	}
}

// SendGrid's signed Event Webhook: the documented event list, signed with
// the configured key's private half and a fresh timestamp, gives its
// delivered, bounce and spamreport events; unsigned, tampered and stale
// requests are refused.
func TestSendGridWebhook(t *testing.T) {
	t.Parallel()
	h := startHooks(t, "example@test.com")
	const path = "/v1/webhooks/sendgrid"
	body := readFixture(t, "sendgrid_events.json")
	body = strings.ReplaceAll(body, "<14c5d75ce93.dfd.64b469@ismtpd-555>", h.messageID("example@test.com"))
	// The documentation gives every event the placeholder id
	// "sg_event_id"; SendGrid's are unique.
	for i := 0; strings.Contains(body, `"sg_event_id": "sg_event_id"`); i++ {
		body = strings.Replace(body, `"sg_event_id": "sg_event_id"`, fmt.Sprintf(`"sg_event_id": "sg-%d"`, i), 1)
	}
	ts := strconv.FormatInt(clock.Now().Unix(), 10)
	signed := map[string]string{bounce.SendGridTimestampHeader: ts, bounce.SendGridSignatureHeader: h.sg.Sign(t, ts, []byte(body))}
	h.expect("unsigned", path, []byte(body), nil, 401, "unsigned")
	h.expect("tampered", path, []byte(strings.Replace(body, `"bounce"`, `"delivered"`, 1)), signed, 403, "signature does not verify")
	old := strconv.FormatInt(clock.Now().Add(-10*time.Minute).Unix(), 10)
	h.expect("stale", path, []byte(body), map[string]string{bounce.SendGridTimestampHeader: old, bounce.SendGridSignatureHeader: h.sg.Sign(t, old, []byte(body))}, 403, "stale")
	other := bouncetest.NewSendGridKey(t)
	h.expect("another key", path, []byte(body), map[string]string{bounce.SendGridTimestampHeader: ts, bounce.SendGridSignatureHeader: other.Sign(t, ts, []byte(body))}, 403, "signature does not verify")
	if got := h.counts(); got != "0 reports, 0 events, 0 suppressions" {
		t.Fatalf("refused requests stored %s", got)
	}
	h.expect("events", path, []byte(body), signed, 200, `"reports":3,"recorded":3`)
	h.expect("the same events again", path, []byte(body), signed, 200, `"duplicates":3`)
	if got, want := h.state("example@test.com"), "hard_bounce | tips cancelled hard_bounce | email_bounced/hard@sendgrid send welcome, email_complained@sendgrid send welcome, email_delivered@sendgrid send welcome"; got != want {
		t.Errorf("example@test.com: %s\nwant %s", got, want)
	}
}

// mailgunBody is a documented Mailgun payload about the email with
// Message-ID mid, as event id, at now, signed with token under key.
func mailgunBody(t *testing.T, file, id, mid, key, token string, at time.Time) []byte {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(readFixture(t, file)), &w); err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	w["signature"] = map[string]any{"timestamp": ts, "token": token, "signature": bouncetest.MailgunSignature(key, ts, token)}
	ev := w["event-data"].(map[string]any)
	ev["id"], ev["timestamp"] = id, float64(at.UnixNano())/1e9
	ev["message"].(map[string]any)["headers"].(map[string]any)["message-id"] = strings.Trim(mid, "<>")
	b, _ := json.Marshal(w)
	return b
}

// Mailgun: signatures checked, stale timestamps and replayed tokens
// refused; two temporary failures within the window (the limit is 2
// here) suppress the address as soft_bounce; deliveries and complaints
// recorded.
func TestMailgunWebhook(t *testing.T) {
	t.Parallel()
	h := startHooks(t, "alice@example.com")
	const path = "/v1/webhooks/mailgun"
	mid, now := h.messageID("alice@example.com"), clock.Now()
	first := mailgunBody(t, "mailgun_failed_temporary.json", "temp-1", mid, mailgunKey, "token-000000000000000000000000000000000000000000001", now)
	var unsigned map[string]any
	_ = json.Unmarshal(first, &unsigned)
	delete(unsigned, "signature")
	b, _ := json.Marshal(unsigned)
	h.expect("unsigned", path, b, nil, 401, "unsigned")
	h.expect("another key", path, mailgunBody(t, "mailgun_failed_temporary.json", "temp-1", mid, "key-guessed", "token-x", now), nil, 403, "signature does not verify")
	h.expect("stale", path, mailgunBody(t, "mailgun_failed_temporary.json", "temp-1", mid, mailgunKey, "token-y", now.Add(-time.Hour)), nil, 403, "stale")
	if got := h.counts(); got != "0 reports, 0 events, 0 suppressions" {
		t.Fatalf("refused requests stored %s", got)
	}
	h.expect("first temporary failure", path, first, nil, 200, `"recorded":1`)
	if got, want := h.state("alice@example.com"), "not suppressed | tips queued | email_bounced/soft@mailgun send welcome"; got != want {
		t.Errorf("after one soft bounce: %s\nwant %s", got, want)
	}
	h.expect("the same request replayed", path, first, nil, 403, "replayed")
	h.expect("second temporary failure", path, mailgunBody(t, "mailgun_failed_temporary.json", "temp-2", mid, mailgunKey, "token-000000000000000000000000000000000000000000002", now), nil, 200, `"suppressed":1`)
	h.expect("delivered", path, mailgunBody(t, "mailgun_delivered.json", "delivered-1", mid, mailgunKey, "token-000000000000000000000000000000000000000000003", now), nil, 200, `"recorded":1`)
	h.expect("complained", path, mailgunBody(t, "mailgun_complained.json", "complained-1", mid, mailgunKey, "token-000000000000000000000000000000000000000000004", now), nil, 200, `"recorded":1`)
	h.expect("the complaint again, a new token", path, mailgunBody(t, "mailgun_complained.json", "complained-1", mid, mailgunKey, "token-000000000000000000000000000000000000000000005", now), nil, 200, `"duplicates":1`)
	if got, want := h.state("alice@example.com"), "soft_bounce | tips cancelled soft_bounce | email_bounced/soft@mailgun send welcome, email_bounced/soft@mailgun send welcome, email_complained@mailgun send welcome, email_delivered@mailgun send welcome"; got != want {
		t.Errorf("alice: %s\nwant %s", got, want)
	}
	if got := one(t, h.pool, `SELECT detail FROM suppressions WHERE email = 'alice@example.com'`); !strings.HasPrefix(got, "2 soft bounces in 30 days (last: mailgun report temp-2: generic: 452") {
		t.Errorf("suppression detail %q", got)
	}
}

// Waymark's own shape (POST /v1/webhooks/bounces, a management API key)
// records reports too: tied to the send by message_id, once per content
// when it has no id.
func TestOwnShapeWebhookRecordsReports(t *testing.T) {
	t.Parallel()
	h := startHooks(t, "dee@example.com")
	key, err := store.New(h.pool).CreateAPIKey(context.Background(), "relay")
	if err != nil {
		t.Fatal(err)
	}
	soft := `{"type":"bounce","email":"DEE@example.com","bounce_type":"soft","diagnostic":"452 4.2.2 mailbox full","message_id":"` + h.messageID("dee@example.com") + `"}`
	for i := 0; i < 2; i++ {
		if code := postWithKey(t, h.base, "/v1/webhooks/bounces", key, soft); code != 200 {
			t.Fatalf("soft bounce %d: %d", i, code)
		}
	}
	if code := postWithKey(t, h.base, "/v1/webhooks/bounces", key, `[{"type":"delivery","email":"dee@example.com","id":"d-1"},{"type":"delivery","email":"dee@example.com","id":"d-1"}]`); code != 200 {
		t.Fatalf("deliveries: %d", code)
	}
	if got, want := h.state("dee@example.com"), "not suppressed | tips queued | email_bounced/soft@waymark send welcome, email_delivered@waymark"; got != want {
		t.Errorf("dee: %s\nwant %s", got, want)
	}
}
