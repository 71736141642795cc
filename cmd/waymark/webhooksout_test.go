package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/webhook"
)

// Webhooks out: a stage move is told to the endpoint the journey declares,
// signed as the Standard Webhooks specification says (the receiver checks
// it as the specification's libraries do), with the contact and the move;
// an answer other than 2xx is retried with the same webhook-id.
func TestWebhooksOutReportStageMoves(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw)
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		id, typ string
		data    map[string]any
	}
	var (
		mu       sync.Mutex
		received []got
		attempts = map[string]int{}
		refusedB = false
	)
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
		mu.Lock()
		defer mu.Unlock()
		attempts[id]++
		// bob's first delivery is refused: it must come again, same id.
		if ev.Data["user_id"] == "bob" && !refusedB {
			refusedB = true
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		received = append(received, got{id, ev.Type, ev.Data})
	}))
	defer recv.Close()
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
	var delivered, failing int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'delivered'), (SELECT count(*) FROM webhook_endpoints WHERE failing_since IS NOT NULL) FROM webhook_outbox`).Scan(&delivered, &failing)
	if delivered != 2 || failing != 0 {
		t.Errorf("outbox: %d delivered, %d endpoints failing; want 2 and none (a success clears the failure)", delivered, failing)
	}
}
