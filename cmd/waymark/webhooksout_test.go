package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/internal/store"
	"github.com/waymark/waymark/internal/webhook"
)

// Webhooks out: a stage move is told to the endpoint the journey declares,
// signed as the Standard Webhooks specification says (the receiver checks
// it as the specification's libraries do), with the contact and the move;
// an answer other than 2xx is retried with the same webhook-id.
func TestWebhooksOutReportStageMoves(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		received []delivery
		attempts = map[string]int{}
		refusedB = false
	)
	recv, secret := webhookReceiver(t, func(d delivery) int {
		mu.Lock()
		defer mu.Unlock()
		attempts[d.id]++
		// bob's first delivery is refused: it must come again, same id.
		if d.data["user_id"] == "bob" && !refusedB {
			refusedB = true
			return http.StatusServiceUnavailable
		}
		received = append(received, d)
		return 0
	})
	base, pool := startServeOpts(t, `rules:
  - {name: buyer, from: [awareness], to: consideration, when: 'count("order_completed", "30d") >= 1'}
webhooks:
  - name: crm
    url: `+recv.URL+`/hooks
    events: [stage_changed]
    secret_env: WAYMARK_WEBHOOK_CRM_SECRET
`, nil, serveOptions{Getenv: func(k string) string {
		if k == "WAYMARK_WEBHOOK_CRM_SECRET" {
			return secret
		}
		return ""
	}})
	for _, u := range []string{"ann", "bob"} {
		if code := postJSON(t, base, "/v1/track", `{"userId":"`+u+`","event":"order_completed","messageId":"o-`+u+`"}`); code != 200 {
			t.Fatalf("track: %d", code)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(received) != 2 {
		t.Fatalf("received %+v, want ann's and bob's stage_changed", received)
	}
	users := map[string]bool{}
	for _, g := range received {
		if g.typ != "stage_changed" || g.data["from"] != "awareness" || g.data["to"] != "consideration" || g.data["rule"] != "buyer" {
			t.Errorf("delivery %s: %s %v", g.id, g.typ, g.data)
		}
		users[g.data["user_id"].(string)] = true
		want := 1
		if g.data["user_id"] == "bob" {
			want = 2 // refused once, then delivered under the same id
		}
		if attempts[g.id] != want {
			t.Errorf("%s (%s) came %d times, want %d", g.id, g.data["user_id"], attempts[g.id], want)
		}
	}
	if !users["ann"] || !users["bob"] {
		t.Errorf("users %v", users)
	}
	// The deliverer records a delivery once the receiver has answered:
	// the receiver may have both before the outbox says so.
	var delivered, failing int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'delivered'), (SELECT count(*) FROM webhook_endpoints WHERE failing_since IS NOT NULL) FROM webhook_outbox`).Scan(&delivered, &failing)
		if (delivered == 2 && failing == 0) || time.Now().After(deadline) {
			break
		}
	}
	if delivered != 2 || failing != 0 {
		t.Errorf("outbox: %d delivered, %d endpoints failing; want 2 and none (a success clears the failure)", delivered, failing)
	}
	mu.Unlock()

	// The API: the endpoint with its figures, its delivery log (bob's
	// with 2 attempts and the refusal), and "send test event".
	apiKey, err := store.New(pool).CreateAPIKey(context.Background(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	var eps struct {
		Items []struct {
			Name      string  `json:"name"`
			Delivered int     `json:"delivered"`
			Pending   int     `json:"pending"`
			LastError *string `json:"last_error"`
		} `json:"items"`
	}
	getWithKey(t, base, "/api/v1/webhooks", apiKey, &eps)
	if len(eps.Items) != 1 || eps.Items[0].Name != "crm" || eps.Items[0].Delivered != 2 || eps.Items[0].LastError == nil {
		t.Errorf("GET /api/v1/webhooks: %+v", eps)
	}
	var log struct {
		Items []struct {
			Type       string  `json:"type"`
			Status     string  `json:"status"`
			Attempts   int     `json:"attempts"`
			LastStatus *int    `json:"last_status"`
			LastError  *string `json:"last_error"`
		} `json:"items"`
	}
	getWithKey(t, base, "/api/v1/webhooks/crm/deliveries", apiKey, &log)
	retried := 0
	for _, d := range log.Items {
		if d.Status == "delivered" && d.Attempts == 2 && d.LastError != nil && strings.Contains(*d.LastError, "503") {
			retried++
		}
	}
	if len(log.Items) != 2 || retried != 1 {
		t.Errorf("the delivery log: %+v; want 2 delivered, one after a 503", log.Items)
	}
	if code := postWithKey(t, base, "/api/v1/webhooks/crm/test", apiKey, ""); code != http.StatusAccepted {
		t.Errorf("send test event: %d", code)
	}
	if code := postWithKey(t, base, "/api/v1/webhooks/nope/test", apiKey, ""); code != http.StatusNotFound {
		t.Errorf("test event to no endpoint: %d", code)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(received)
		last := received[n-1]
		mu.Unlock()
		if n == 3 && last.typ == "webhook.test" && last.data["endpoint"] == "crm" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test event did not arrive: %d deliveries, last %+v", n, last)
		}
	}
	mu.Lock()
}

// getWithKey GETs path with a management API key and decodes the JSON.
func getWithKey(t *testing.T, base, path, key string, v any) {
	t.Helper()
	code, b := requestWithKey(t, "GET", base+path, key, "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// Every kind of change the journey's endpoint asks for is told, once, in
// the transaction of the change: an enrolment, an email sent, a complaint
// and a hard bounce reported by the relay, an unsubscription by the
// email's one-click link, an offer drawn by a sweep, an order credited to
// the email opened before it (a conversion, by the scheduler's pass).
func TestWebhooksOutReportEnrolmentsSendsBouncesAndOffers(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		byType = map[string][]map[string]any{}
		ids    = map[string]bool{}
	)
	recv, secret := webhookReceiver(t, func(d delivery) int {
		mu.Lock()
		defer mu.Unlock()
		if ids[d.id] {
			t.Errorf("%s delivered twice", d.id)
		}
		ids[d.id] = true
		byType[d.typ] = append(byType[d.typ], d.data)
		return 0
	})
	smtp := smtptest.Start(t)
	base, pool := startServeOpts(t, `sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: hi}
offers:
  - {name: thanks, when: 'ever("order_completed")', share: 1, template: hi, prefix: T-}
sending:
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - {name: hi, subject: Hi, text: Hello}
webhooks:
  - name: crm
    url: `+recv.URL+`
    events: [enrolled, email_sent, email_bounced, email_complained, unsubscribed, offer_given, conversion]
    secret_env: CRM_SECRET
`, map[string]string{"WAYMARK_SMTP_URL": "smtp://" + smtp.Addr() + "?tls=none", "WAYMARK_FROM": "shop@shop.example", "WAYMARK_CRON": "@every 1s"},
		serveOptions{Getenv: func(k string) string { return map[string]string{"CRM_SECRET": secret}[k] }})
	if code := postJSON(t, base, "/v1/identify", `{"userId":"ann","traits":{"email":"ann@example.com"},"messageId":"i1"}`); code != 200 {
		t.Fatalf("identify: %d", code)
	}
	welcome := smtp.WaitFor(1, 10*time.Second)[0]
	// ann opens the welcome as a person (recorded as the open pixel's
	// handler records it), then orders.
	var annID, welcomeID int64
	if err := pool.QueryRow(context.Background(), `SELECT contact_id, id FROM sends WHERE sequence = 'welcome'`).Scan(&annID, &welcomeID); err != nil {
		t.Fatal(err)
	}
	if _, err := store.New(pool).TrackEngagement(context.Background(), annID, welcomeID, "email_opened", nil, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if code := postJSON(t, base, "/v1/track", `{"userId":"ann","event":"order_completed","messageId":"o1","properties":{"revenue":"42.50"}}`); code != 200 {
		t.Fatalf("track: %d", code)
	}
	apiKey, err := store.New(pool).CreateAPIKey(context.Background(), "relay")
	if err != nil {
		t.Fatal(err)
	}
	// ann complains (the relay says so), and unsubscribes by the
	// welcome's one-click link.
	if code := postWithKey(t, base, "/v1/webhooks/bounces", apiKey, `{"type":"complaint","email":"ann@example.com","diagnostic":"abuse report","id":"c-1"}`); code != 200 {
		t.Fatalf("complaint: %d", code)
	}
	m := regexp.MustCompile(`/u/([A-Za-z0-9_-]+)>`).FindStringSubmatch(strings.Join(welcome.Header("List-Unsubscribe"), ""))
	if m == nil {
		t.Fatalf("no unsubscribe link in %q", welcome.Header("List-Unsubscribe"))
	}
	resp, err := http.Post(base+"/u/"+m[1], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click unsubscribe: %d", resp.StatusCode)
	}
	if code := postWithKey(t, base, "/v1/webhooks/bounces", apiKey, `{"type":"bounce","email":"ann@example.com","bounce_type":"hard","diagnostic":"550 5.1.1 no such user","id":"b-1"}`); code != 200 {
		t.Fatalf("bounce: %d", code)
	}
	want := map[string]int{"enrolled": 1, "email_sent": 1, "email_bounced": 1, "email_complained": 1, "unsubscribed": 1, "offer_given": 1, "conversion": 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := true
		for typ, n := range want {
			if len(byType[typ]) < n {
				done = false
			}
		}
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // nothing more comes
	// The offer's email may have gone out before the bounce: one
	// email_sent for each email sent.
	var sent int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM sends WHERE status = 'sent'`).Scan(&sent)
	want["email_sent"] = sent
	mu.Lock()
	defer mu.Unlock()
	for typ, n := range want {
		if len(byType[typ]) != n {
			t.Errorf("%s: %d deliveries %v, want %d", typ, len(byType[typ]), byType[typ], n)
		}
	}
	if e := byType["enrolled"]; len(e) == 1 && e[0]["sequence"] != "welcome" {
		t.Errorf("enrolled %v", e[0])
	}
	if e := byType["email_sent"]; len(e) >= 1 && (e[0]["recipient"] != "ann@example.com" || e[0]["template"] != "hi" || e[0]["message_id"] == "") {
		t.Errorf("email_sent %v", e[0])
	}
	if e := byType["email_bounced"]; len(e) == 1 && (e[0]["email"] != "ann@example.com" || e[0]["type"] != "hard") {
		t.Errorf("email_bounced %v", e[0])
	}
	if e := byType["offer_given"]; len(e) == 1 && (e[0]["offer"] != "thanks" || e[0]["code"] == "") {
		t.Errorf("offer_given %v", e[0])
	}
	if e := byType["email_complained"]; len(e) == 1 && (e[0]["email"] != "ann@example.com" || e[0]["provider"] == "") {
		t.Errorf("email_complained %v", e[0])
	}
	if e := byType["unsubscribed"]; len(e) == 1 && (e[0]["email"] != "ann@example.com" || e[0]["send_id"] == nil) {
		t.Errorf("unsubscribed %v", e[0])
	}
	if e := byType["conversion"]; len(e) == 1 {
		c := e[0]
		if c["contact_id"] != float64(annID) || c["event"] != "order_completed" || c["message_id"] != "o1" || c["value"] != 42.5 || c["stage"] != "awareness" ||
			c["send_id"] != float64(welcomeID) || c["template"] != "hi" || c["sequence"] != "welcome" || c["step"] != float64(0) || c["touch"] != "opened" ||
			c["broadcast"] != nil || c["variant"] != nil || c["touch_at"] == nil || c["at"] == nil {
			t.Errorf("conversion %v", c)
		}
	}
}

// Webhooks out survive a kill -9 of the process delivering them: every
// stage move is told at least once, by the instance started after it
// (the outbox is in PostgreSQL; the dead instance's claims are taken
// over when their lease runs out).
func TestFaultWebhooksSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a serve process and waits out its claims' lease")
	}
	t.Parallel()
	var (
		mu    sync.Mutex
		users = map[string]int{}
		total int
	)
	recv, secret := webhookReceiver(t, func(d delivery) int {
		time.Sleep(20 * time.Millisecond) // deliveries stay in flight
		mu.Lock()
		defer mu.Unlock()
		users[fmt.Sprint(d.data["user_id"])]++
		total++
		return 0
	})
	url := pgtest.Clone(t)
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "j.yaml"), []byte(`rules:
  - {name: buyer, from: [awareness], to: consideration, when: 'count("order_completed", "30d") >= 1'}
webhooks:
  - {name: crm, url: `+recv.URL+`, events: [stage_changed], secret_env: CRM_SECRET}
`), 0o644)
	if _, errOut, err := runWith(t, map[string]string{"DATABASE_URL": url}, "apply", "-f", filepath.Join(dir, "j.yaml")); err != nil {
		t.Fatalf("apply: %v\n%s", err, errOut)
	}
	bin := buildFaultBinary(t)
	env := map[string]string{"DATABASE_URL": url, "CRM_SECRET": secret}
	a := startServeProc(t, bin, "serve A", env)
	base := a.baseURL(t, 30*time.Second)
	const n = 300
	var es []string
	for i := range n {
		es = append(es, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"order_completed","messageId":"o%d"}`, i, i))
	}
	if code := postJSON(t, base, "/v1/batch", `{"batch":[`+strings.Join(es, ",")+`]}`); code != 200 {
		t.Fatalf("batch: %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		got := total
		mu.Unlock()
		if got >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve A delivered %d in 30 s", got)
		}
	}
	a.kill(t)
	mu.Lock()
	atKill := total
	mu.Unlock()
	b := startServeProc(t, bin, "serve B", env)
	b.baseURL(t, 30*time.Second)
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		seen := len(users)
		mu.Unlock()
		if seen == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for i := range n {
		if users[fmt.Sprint("u", i)] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d stage moves never told (%d deliveries before the kill, %d in all)", missing, n, atKill, total)
	}
	t.Logf("%d deliveries before the kill, %d in all for %d moves (at least once)", atKill, total, n)
}

// delivery is a webhook a receiver got, signature verified.
type delivery struct {
	id, typ string
	data    map[string]any
}

// webhookReceiver is a real HTTP receiver of webhooks signed with a fresh
// secret (returned as the journey's variable would hold it): it verifies
// each request as the Standard Webhooks libraries do (an unverifiable one
// fails the test and gets 401) and hands the delivery to answer, whose
// status code it returns (0: 200).
func webhookReceiver(t *testing.T, answer func(delivery) int) (*httptest.Server, string) {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw)
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		if err := webhook.Verify(key, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("a delivery that does not verify: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("a delivery that is not JSON: %s", body)
		}
		if code := answer(delivery{id, ev.Type, ev.Data}); code != 0 {
			http.Error(w, http.StatusText(code), code)
		}
	}))
	t.Cleanup(recv.Close)
	return recv, secret
}
