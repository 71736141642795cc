package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

const trackingJourney = `rules:
  - name: reader
    from: [awareness]
    to: consideration
    when: count("email_opened", "14d") >= 1
sequences:
  - name: welcome
    trigger: {event: signed_up}
    steps:
      - {after: 0h, template: welcome}
      - {after: 48h, template: tips}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: welcome
    subject: 'Welcome, {{.Contact.FirstName | default "friend"}}'
    text: 'Hello {{.Contact.FirstName}}. The sale: https://shop.example/sale'
    html: '<html><body><p>Hello {{.Contact.FirstName}}. <a href="https://shop.example/sale?x=1&amp;y=2">The sale</a></p></body></html>'
  - {name: tips, subject: "Three tips", text: "Tip one."}
`

const chromeUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}

func hit(t *testing.T, method, u, ua, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func one(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// TestMarketingEmailCarriesUnsubscribeAndTracking runs serve against a
// real SMTP server with DKIM on and follows the links of the emails it
// sends: the RFC 8058 headers are there and signed, a GET of the
// unsubscribe link changes nothing and the one-click POST unsubscribes,
// tampered links are refused, a click goes to the signed target and is
// recorded with the send's sequence, step and template, a machine's open
// does not count and a person's does. A CR/LF in a contact's name adds
// neither a header nor a recipient.
func TestMarketingEmailCarriesUnsubscribeAndTracking(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	smtp := smtptest.Start(t)
	const public = "https://links.shop.example"
	base, pool := startServeWith(t, trackingJourney, map[string]string{
		"WAYMARK_SMTP_URL":       "smtp://" + smtp.Addr() + "?tls=none",
		"WAYMARK_FROM":           "Shop <news@shop.example>",
		"WAYMARK_SECRET":         "a-secret-for-the-tracking-test",
		"WAYMARK_PUBLIC_URL":     public,
		"WAYMARK_POSTAL_ADDRESS": "Shop Ltd, 1 High Street, Bristol",
		"WAYMARK_DKIM_DOMAIN":    "shop.example",
		"WAYMARK_DKIM_SELECTOR":  "wm",
		"WAYMARK_DKIM_KEY_FILE":  keyFile,
		"WAYMARK_CRON":           "@every 1h",
	})
	for _, body := range []string{
		`{"userId":"ann","traits":{"email":"ann@example.com","first_name":"Ann\r\nBcc: evil@example.net\r\nX-Injected: 1"},"messageId":"i1"}`,
		`{"userId":"bo","traits":{"email":"bo@example.com","first_name":"Bo"},"messageId":"i2"}`,
		`{"userId":"ann","event":"signed_up","messageId":"s1"}`,
		`{"userId":"bo","event":"signed_up","messageId":"s2"}`,
	} {
		path := "/v1/track"
		if strings.Contains(body, "traits") {
			path = "/v1/identify"
		}
		if code := postJSON(t, base, path, body); code != 200 {
			t.Fatalf("%s %s: %d", path, body, code)
		}
	}
	msgs := smtp.WaitFor(2, 15*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	byRcpt := map[string]smtptest.Message{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("envelope recipients %q, want one", m.To)
		}
		byRcpt[m.To[0]] = m
	}
	ann, bo := byRcpt["ann@example.com"], byRcpt["bo@example.com"]
	if ann.Data == nil || bo.Data == nil {
		t.Fatalf("recipients %v", msgs)
	}

	// Headers: one of each, nothing injected, RFC 8058 and DKIM over it.
	lu := regexp.MustCompile(`^<` + regexp.QuoteMeta(public) + `/u/([A-Za-z0-9_-]+)>, <mailto:news@shop\.example\?subject=unsubscribe%20([A-Za-z0-9_-]+)>$`)
	tokens := map[string]string{}
	for rcpt, m := range byRcpt {
		for _, h := range []string{"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "DKIM-Signature"} {
			if n := len(m.Header(h)); n != 1 {
				t.Errorf("%s: %d %s fields, want 1", rcpt, n, h)
			}
		}
		if to := m.Header("To"); len(to) == 1 && to[0] != "<"+rcpt+">" {
			t.Errorf("%s: To %q", rcpt, to[0])
		}
		for _, h := range []string{"Bcc", "Cc", "X-Injected"} {
			if v := m.Header(h); v != nil {
				t.Errorf("%s: a contact's name added %s: %q\n%s", rcpt, h, v, m.Data)
			}
		}
		mm := lu.FindStringSubmatch(strings.Join(m.Header("List-Unsubscribe"), ""))
		if mm == nil || mm[1] != mm[2] {
			t.Fatalf("%s: List-Unsubscribe %q", rcpt, m.Header("List-Unsubscribe"))
		}
		tokens[rcpt] = mm[1]
		if p := m.Header("List-Unsubscribe-Post"); len(p) != 1 || p[0] != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post %q", rcpt, p)
		}
		sig := m.Header("DKIM-Signature")
		if len(sig) == 1 && !strings.Contains(strings.Join(strings.Fields(dkimTag(sig[0], "h")), ""), "List-Unsubscribe:List-Unsubscribe-Post") {
			t.Errorf("%s: DKIM h= %q does not cover the List-Unsubscribe fields", rcpt, dkimTag(sig[0], "h"))
		}
		if err := verifyEd25519DKIM(m.Data, pub); err != nil {
			t.Errorf("%s: DKIM does not verify: %v\n%s", rcpt, err, m.Data)
		}
		changed := strings.Replace(string(m.Data), "/u/"+mm[1], "/u/"+flipToken(mm[1]), 1)
		if err := verifyEd25519DKIM([]byte(changed), pub); err == nil {
			t.Errorf("%s: DKIM still verifies with List-Unsubscribe changed", rcpt)
		}
	}
	if subj, err := ann.DecodedHeader("Subject"); err != nil || strings.ContainsAny(subj, "\r\n") || !strings.HasPrefix(subj, "Welcome, Ann") {
		t.Errorf("ann's Subject %q (%v)", subj, err)
	}

	// Footer in both parts; in HTML, a click redirect and the pixel.
	parts, err := bo.Parts()
	if err != nil || len(parts) != 2 {
		t.Fatalf("bo's parts: %d, %v", len(parts), err)
	}
	text, html := string(parts[0].Body), string(parts[1].Body)
	unsubURL := public + "/u/" + tokens["bo@example.com"]
	for part, body := range map[string]string{"text": text, "html": html} {
		for _, want := range []string{"Shop Ltd, 1 High Street, Bristol", unsubURL, public + "/preferences/"} {
			if !strings.Contains(body, want) {
				t.Errorf("bo's %s part lacks %q:\n%s", part, want, body)
			}
		}
	}
	click := regexp.MustCompile(`href="` + regexp.QuoteMeta(public) + `/c/([A-Za-z0-9_-]+)"`).FindStringSubmatch(html)
	pixel := regexp.MustCompile(`background="` + regexp.QuoteMeta(public) + `/o/([A-Za-z0-9_-]+)"`).FindStringSubmatch(html)
	if click == nil || pixel == nil || strings.Contains(html, `href="https://shop.example/sale`) {
		t.Fatalf("bo's HTML has no click redirect or no pixel, or an untracked link:\n%s", html)
	}

	// Ann: GET shows a page and changes nothing; a tampered token is
	// refused; the one-click POST unsubscribes at once.
	annID := one(t, pool, `SELECT id::text FROM contacts WHERE user_id = 'ann'`)
	annState := func() string {
		return one(t, pool, `SELECT concat_ws(' | ', c.status, coalesce(sp.reason, 'not suppressed'),
			(SELECT string_agg(s.template || ':' || s.status || '/' || coalesce(s.delayed_reason, ''), ', ' ORDER BY s.step) FROM sends s WHERE s.contact_id = c.id),
			(SELECT string_agg(e.status || '/' || coalesce(e.reason, ''), ', ') FROM enrolments e WHERE e.contact_id = c.id))
			FROM contacts c LEFT JOIN suppressions sp ON sp.email = c.email WHERE c.id = $1`, annID)
	}
	const subscribed = "subscribed | not suppressed | welcome:sent/, tips:queued/ | active/"
	// The server has the messages a moment before the sender records
	// them as sent and queues the next steps.
	for deadline := time.Now().Add(10 * time.Second); annState() != subscribed || one(t, pool, `SELECT count(*)::text FROM sends WHERE status = 'sent'`) != "2"; {
		if time.Now().After(deadline) {
			t.Fatalf("ann before: %s, want %s", annState(), subscribed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	annTok := tokens["ann@example.com"]
	resp, page := hit(t, "GET", base+"/u/"+annTok, chromeUA, "")
	if resp.StatusCode != 200 || !strings.Contains(page, `<form method="post">`) || !strings.Contains(page, "ann@example.com") {
		t.Errorf("GET /u/: %d\n%s", resp.StatusCode, page)
	}
	for _, tok := range []string{flipToken(annTok), annTok[:len(annTok)-2], tokens["bo@example.com"][:10] + annTok[10:]} {
		if resp, _ := hit(t, "POST", base+"/u/"+tok, "", "List-Unsubscribe=One-Click"); resp.StatusCode != 400 {
			t.Errorf("POST of a tampered token %s: %d, want 400", tok, resp.StatusCode)
		}
	}
	if got := annState(); got != subscribed {
		t.Fatalf("ann after a GET and tampered POSTs: %s, want %s", got, subscribed)
	}
	resp, _ = hit(t, "POST", base+"/u/"+annTok, "", "List-Unsubscribe=One-Click")
	if resp.StatusCode != 200 || len(resp.Cookies()) != 0 {
		t.Fatalf("one-click POST: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if got, want := annState(), "unsubscribed | unsubscribed | welcome:sent/, tips:cancelled/unsubscribed | exited/unsubscribed"; got != want {
		t.Errorf("ann after the one-click POST: %s, want %s", got, want)
	}

	// Bo: the pixel fetched at delivery is a machine's and does not
	// count; a person's click goes to the signed target and is recorded;
	// a person's open counts, and the rule that reads it moves Bo.
	boID := one(t, pool, `SELECT id::text FROM contacts WHERE user_id = 'bo'`)
	if resp, body := hit(t, "GET", base+"/o/"+pixel[1], chromeUA, ""); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("pixel: %d %q", resp.StatusCode, body)
	}
	opens := func() string {
		t.Helper()
		prog, err := rule.Compile(`count("email_opened", "14d") + count("email_opened_machine", "14d") > 0`, rule.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		fmt.Sscan(boID, &id)
		fs, err := store.New(pool).LoadFacts(context.Background(), lifecycle.FactsQuery{IDs: []int64{id}, AsOf: clock.Now().Add(time.Second), Needs: prog.Aggregates})
		if err != nil || len(fs) != 1 {
			t.Fatalf("LoadFacts: %v", err)
		}
		var out []string
		for _, a := range prog.Aggregates {
			out = append(out, fmt.Sprintf("%s=%v", a, fs[0].Values[a]))
		}
		return strings.Join(out, " ")
	}
	if got, want := opens(), `count("email_opened", "14d")=0 count("email_opened_machine", "14d")=1`; got != want {
		t.Errorf("after a machine open: %s, want %s", got, want)
	}
	// An hour passes (no person opens within seconds of delivery).
	if _, err := pool.Exec(context.Background(), `UPDATE sends SET sent_at = sent_at - interval '1 hour' WHERE contact_id = $1::bigint`, boID); err != nil {
		t.Fatal(err)
	}
	resp, _ = hit(t, "GET", base+"/c/"+click[1], chromeUA, "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "https://shop.example/sale?x=1&y=2" {
		t.Errorf("click: %d to %q, want 302 to the signed target", resp.StatusCode, loc)
	}
	swapped := click[1][:8] + flipToken(click[1][8:])
	if resp, _ := hit(t, "GET", base+"/c/"+swapped, chromeUA, ""); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("tampered click: %d to %q, want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got, want := one(t, pool, `SELECT string_agg(name || ' ' || (properties - 'user_agent' - 'send_id')::text, E'\n' ORDER BY occurred_at) FROM events
		WHERE contact_id = $1::bigint AND name LIKE 'email_%'`, boID),
		`email_opened_machine {"step": 0, "machine": true, "sequence": "welcome", "template": "welcome", "machine_reason": "within 10s of sending"}`+"\n"+
			`email_clicked {"url": "https://shop.example/sale?x=1&y=2", "step": 0, "sequence": "welcome", "template": "welcome"}`; got != want {
		t.Errorf("bo's events:\n%s\nwant\n%s", got, want)
	}
	if stage := one(t, pool, `SELECT stage FROM contacts WHERE id = $1::bigint`, boID); stage != "awareness" {
		t.Errorf("bo moved to %s on a machine open", stage)
	}
	hit(t, "GET", base+"/o/"+pixel[1], chromeUA, "")
	if got, want := opens(), `count("email_opened", "14d")=1 count("email_opened_machine", "14d")=1`; got != want {
		t.Errorf("after a person's open: %s, want %s", got, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for one(t, pool, `SELECT stage FROM contacts WHERE id = $1::bigint`, boID) != "consideration" {
		if time.Now().After(deadline) {
			t.Fatal("the open did not move bo to consideration")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The preferences link in the footer opens the page.
	prefs := regexp.MustCompile(regexp.QuoteMeta(public) + `/preferences/([A-Za-z0-9_-]+)`).FindStringSubmatch(text)
	if resp, body := hit(t, "GET", base+"/preferences/"+prefs[1], chromeUA, ""); resp.StatusCode != 200 || !strings.Contains(body, "bo@example.com receives our marketing emails") {
		t.Errorf("preferences: %d\n%s", resp.StatusCode, body)
	}
}

// flipToken changes one character of a token, keeping it URL-safe.
func flipToken(tok string) string {
	b := []byte(tok)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func dkimTag(sig, tag string) string {
	for _, t := range strings.Split(strings.NewReplacer("\r\n", "").Replace(sig), ";") {
		if k, v, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == tag {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var wspRun = regexp.MustCompile(`[ \t]+`)

// verifyEd25519DKIM checks an ed25519-sha256, relaxed/relaxed DKIM
// signature (RFC 6376, RFC 8463), written from the RFCs independently of
// the signer.
func verifyEd25519DKIM(msg []byte, pub ed25519.PublicKey) error {
	head, body, ok := strings.Cut(string(msg), "\r\n\r\n")
	if !ok {
		return errors.New("no end of header")
	}
	var fields []string // raw, with folding
	for _, line := range strings.Split(head, "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += "\r\n" + line
			continue
		}
		fields = append(fields, line)
	}
	name := func(f string) string { n, _, _ := strings.Cut(f, ":"); return strings.ToLower(strings.TrimSpace(n)) }
	relaxed := func(f string) string {
		n, v, _ := strings.Cut(f, ":")
		v = wspRun.ReplaceAllString(strings.ReplaceAll(v, "\r\n", ""), " ")
		return strings.ToLower(strings.TrimSpace(n)) + ":" + strings.Trim(v, " ")
	}
	var sig string
	for _, f := range fields {
		if name(f) == "dkim-signature" {
			sig = f
		}
	}
	if sig == "" {
		return errors.New("no DKIM-Signature")
	}
	_, sigValue, _ := strings.Cut(sig, ":")
	if a, c := dkimTag(sigValue, "a"), dkimTag(sigValue, "c"); a != "ed25519-sha256" || c != "relaxed/relaxed" {
		return fmt.Errorf("a=%s c=%s", a, c)
	}
	lines := strings.Split(body, "\r\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(wspRun.ReplaceAllString(l, " "), " ")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	canonBody := ""
	if len(lines) > 0 {
		canonBody = strings.Join(lines, "\r\n") + "\r\n"
	}
	bh := sha256.Sum256([]byte(canonBody))
	if got, want := base64.StdEncoding.EncodeToString(bh[:]), strings.Join(strings.Fields(dkimTag(sigValue, "bh")), ""); got != want {
		return fmt.Errorf("body hash %s, signed %s", got, want)
	}
	var in strings.Builder
	used := map[int]bool{}
	for _, h := range strings.Split(strings.Join(strings.Fields(dkimTag(sigValue, "h")), ""), ":") {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && name(fields[i]) == strings.ToLower(h) {
				used[i] = true
				in.WriteString(relaxed(fields[i]) + "\r\n")
				break
			}
		}
	}
	in.WriteString(relaxed(regexp.MustCompile(`(^|;)([ \t\r\n]*b[ \t\r\n]*=)[^;]*`).ReplaceAllString(sig, "$1$2")))
	hash := sha256.Sum256([]byte(in.String()))
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(dkimTag(sigValue, "b")), ""))
	if err != nil {
		return fmt.Errorf("b=: %w", err)
	}
	if !ed25519.Verify(pub, hash[:], b) {
		return errors.New("signature does not verify")
	}
	return nil
}

// TestSuppressionsAndTrackingOff: addresses suppressed through the API
// and the bounce webhook are never mailed, each skipped send says why; a
// journey with tracking off still gets the unsubscribe headers and the
// footer, but neither click redirects nor the pixel.
func TestSuppressionsAndTrackingOff(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	const public = "https://links.shop.example"
	base, pool := startServeWith(t, strings.Replace(trackingJourney, "sending:\n", "sending:\n  tracking: false\n", 1), map[string]string{
		"WAYMARK_SMTP_URL":       "smtp://" + smtp.Addr() + "?tls=none",
		"WAYMARK_FROM":           "news@shop.example",
		"WAYMARK_PUBLIC_URL":     public,
		"WAYMARK_POSTAL_ADDRESS": "Shop Ltd, 1 High Street, Bristol",
		"WAYMARK_CRON":           "@every 1h",
	})
	// Both take a management API key, never the write key.
	key, err := store.New(pool).CreateAPIKey(context.Background(), "suppressions")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/v1/suppressions", `{"email":"not an address","reason":"manual"}`, 400},
		{"/v1/suppressions", `{"email":"cy@example.com","reason":"manual","detail":"asked by phone"}`, 200},
		{"/v1/webhooks/bounces", `{"type":"bounce","email":"dee@example.com"}`, 400},
		{"/v1/webhooks/bounces", `{"type":"complaint","email":"dee@example.com","diagnostic":"abuse report"}`, 200},
	} {
		if code := postWithKey(t, base, tc.path, key, tc.body); code != tc.code {
			t.Fatalf("%s %s: %d, want %d", tc.path, tc.body, code, tc.code)
		}
	}
	for _, u := range []string{"cy", "dee", "eve"} {
		if code := postJSON(t, base, "/v1/identify", `{"userId":"`+u+`","traits":{"email":"`+u+`@example.com"}}`); code != 200 {
			t.Fatalf("identify %s: %d", u, code)
		}
		if code := postJSON(t, base, "/v1/track", `{"userId":"`+u+`","event":"signed_up"}`); code != 200 {
			t.Fatalf("track %s: %d", u, code)
		}
	}
	const want = "cy:suppressed/suppressed: manual, dee:suppressed/suppressed: complaint, eve:sent/"
	var got string
	for deadline := time.Now().Add(15 * time.Second); ; {
		got = one(t, pool, `SELECT coalesce(string_agg(c.user_id || ':' || s.status || '/' || coalesce(s.delayed_reason, ''), ', ' ORDER BY c.user_id), '')
			FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE s.template = 'welcome'`)
		if got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("welcome sends: %s, want %s", got, want)
	}
	msgs := smtp.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "eve@example.com" {
		t.Fatalf("messages %v, want one, to eve", msgs)
	}
	m := msgs[0]
	if lu := m.Header("List-Unsubscribe"); len(lu) != 1 || !strings.HasPrefix(lu[0], "<"+public+"/u/") {
		t.Errorf("List-Unsubscribe %q", lu)
	}
	parts, err := m.Parts()
	if err != nil || len(parts) != 2 {
		t.Fatalf("parts: %d, %v", len(parts), err)
	}
	html := string(parts[1].Body)
	if !strings.Contains(html, `href="https://shop.example/sale?x=1&amp;y=2"`) || strings.Contains(html, public+"/c/") || strings.Contains(html, public+"/o/") {
		t.Errorf("tracking is off, but the HTML has tracked links or a pixel:\n%s", html)
	}
	for part, body := range map[string]string{"text": string(parts[0].Body), "html": html} {
		if !strings.Contains(body, "Shop Ltd, 1 High Street, Bristol") || !strings.Contains(body, public+"/u/") {
			t.Errorf("the %s part has no footer:\n%s", part, body)
		}
	}
}

// A journey's tracking setting is true or false; anything else is refused
// with its place, and nothing is saved.
func TestJourneyTrackingSettingChecked(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	p := filepath.Join(t.TempDir(), "journey.yaml")
	bad := strings.Replace(trackingJourney, "sending:\n", "sending:\n  tracking: sometimes\n", 1)
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runWaymark(t, url, "apply", "-f", p)
	msg := fmt.Sprint(err) + errOut
	if err == nil || !strings.Contains(msg, "journey.yaml:13:13: sending: tracking must be true or false") {
		t.Errorf("apply of tracking: sometimes: %v\n%s", err, errOut)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if n := one(t, pool, `SELECT (SELECT count(*) FROM settings) + (SELECT count(*) FROM sequences)`); n != "0" {
		t.Errorf("%s rows saved by a refused journey", n)
	}
}
